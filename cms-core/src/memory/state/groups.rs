//! Security groups, as EC2 has them in a VPC.
//!
//! Every network has a default group, made with it and deleted with it, named
//! `default`, which cannot be deleted by itself. Groups belong to a network and their
//! names are unique in it. A new group holds one rule, EC2's: all egress to
//! `0.0.0.0/0`; the default group holds that one and lets its own members in (all
//! ingress from itself). Rules are a set, kept in the model's order (the order of
//! [`SecurityRule`]'s fields: ingress before egress, then protocol `tcp`, `udp`,
//! `icmp`, `all`, then ports, then the peer, CIDR ranges before groups), so adding a
//! rule held already changes nothing and a listing shows the same order every time.

use std::collections::{BTreeSet, HashSet};

use tokio::time::Instant;

use super::family::{merge_sorted, scan_page, Owned};
use super::{token_after, State};
use crate::model::*;
use crate::{Error, ErrorKind, Operation, Result};

#[derive(Debug)]
pub(super) struct GroupRecord {
    /// What does not change; the rules are kept apart.
    group: SecurityGroup,
    rules: BTreeSet<SecurityRule>,
    /// The instances made in it by name (terminated ones too, until purged); the
    /// members of a default group are not counted, as it is never deleted alone.
    pub(super) members: HashSet<u64>,
}

impl Owned for GroupRecord {
    fn owner(&self) -> Option<&str> {
        self.group.owner.as_deref()
    }
}

impl GroupRecord {
    fn view(&self) -> SecurityGroup {
        SecurityGroup {
            rules: self.rules.iter().cloned().collect(),
            ..self.group.clone()
        }
    }

    /// Whether one of its rules names `group` as its peer.
    fn names(&self, group: &SecurityGroupId) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(&r.peer, RulePeer::Group(g) if g == group))
    }
}

/// The rule every new group starts with: all egress to anywhere.
fn all_egress() -> SecurityRule {
    SecurityRule::all(RuleDirection::Egress, RulePeer::Cidr("0.0.0.0/0".into()))
}

fn group_refused(op: Operation, id: &SecurityGroupId, why: String) -> Error {
    Error::new(ErrorKind::InvalidState, why)
        .with_operation(op)
        .with_resource(format!("security group {id}"))
}

impl State {
    /// Makes the default group of a new network.
    pub(super) fn make_default_group(&mut self, network: &NetworkId) -> SecurityGroupId {
        let id = self.groups.next_id();
        let rules = BTreeSet::from([
            all_egress(),
            SecurityRule::all(RuleDirection::Ingress, RulePeer::Group(id.clone())),
        ]);
        let record = GroupRecord {
            group: SecurityGroup {
                id: id.clone(),
                name: "default".into(),
                description: format!("default group of network {network}"),
                network_id: Some(network.clone()),
                rules: Vec::new(),
                is_default: true,
                tags: Tags::new(),
                owner: None,
            },
            rules,
            members: HashSet::new(),
        };
        self.groups.insert(id.clone(), record);
        id
    }

    /// The groups an instance create names, checked: each known (`NotFound`) and of
    /// one of the instance's networks (`InvalidArgument`). Empty when none is named.
    pub(super) fn groups_for(
        &self,
        spec: &InstanceSpec,
        networks: &[NetworkId],
    ) -> Result<Vec<SecurityGroupId>> {
        let op = Operation::CreateInstance;
        for g in &spec.security_group_ids {
            let r = self
                .groups
                .get(g)
                .ok_or_else(|| Error::not_found("security group", g).with_operation(op))?;
            if let Some(n) = &r.group.network_id {
                if !networks.contains(n) {
                    return Err(Error::invalid_argument(
                        "security_group_ids",
                        format!(
                            "security group `{g}` belongs to network `{n}`, which the \
                             instance is not attached to"
                        ),
                    )
                    .with_operation(op));
                }
            }
        }
        Ok(spec.security_group_ids.clone())
    }

    /// Whether a network's groups let it go: none but its default group, and that one
    /// named by no other group's rules.
    pub(super) fn check_network_groups_deletable(
        &self,
        network: &NetworkId,
        default_group: &SecurityGroupId,
    ) -> Result<()> {
        let op = Operation::DeleteNetwork;
        let refuse = |why: String| {
            Error::new(ErrorKind::InvalidState, why)
                .with_operation(op)
                .with_resource(format!("network {network}"))
        };
        if let Some((id, _)) = self
            .groups
            .iter()
            .find(|(id, r)| *id != default_group && r.group.network_id.as_ref() == Some(network))
        {
            return Err(refuse(format!(
                "network `{network}` has security group `{id}`; delete its groups first"
            )));
        }
        if let Some((id, _)) = self
            .groups
            .iter()
            .find(|(id, r)| *id != default_group && r.names(default_group))
        {
            return Err(refuse(format!(
                "the rules of security group `{id}` name the default group `{default_group}` \
                 of network `{network}`; remove those rules first"
            )));
        }
        Ok(())
    }

    pub(in crate::memory) fn get_security_group(
        &self,
        id: &SecurityGroupId,
    ) -> Result<SecurityGroup> {
        self.groups.get(id).map(GroupRecord::view).ok_or_else(|| {
            Error::not_found("security group", id).with_operation(Operation::GetSecurityGroup)
        })
    }

    /// One page of groups. An owner's page reads the owner's index (merged with the
    /// networks' default groups when it includes them).
    pub(in crate::memory) fn list_security_groups(
        &self,
        filter: &SecurityGroupFilter,
        page: &PageRequest,
        limit: usize,
    ) -> Result<Page<SecurityGroup>> {
        let after = self
            .groups
            .after(page.token.as_ref(), Operation::ListSecurityGroups)?;
        let own = self
            .groups
            .candidates(&filter.ids, filter.owner.as_deref(), after.as_ref());
        let mut defaults: Vec<(&SecurityGroupId, &GroupRecord)> = Vec::new();
        if filter.ids.is_empty() && filter.owner.is_some() && filter.include_default {
            defaults = self
                .networks
                .values()
                .filter(|n| after.as_ref().is_none_or(|a| n.default_group > *a))
                .filter_map(|n| self.groups.get_key_value(&n.default_group))
                .collect();
            defaults.sort_unstable_by_key(|(id, _)| *id);
        }
        let merged = merge_sorted(own, defaults.into_iter());
        // What the filter looks at never changes but the rules, which it ignores.
        Ok(scan_page(
            merged,
            limit,
            |(_, r)| filter.matches(&r.group).then(|| r.view()),
            |(id, _)| token_after(id.as_str()),
        ))
    }

    /// Makes a group in a network (the default network when none is named).
    pub(in crate::memory) fn create_security_group(
        &mut self,
        spec: &SecurityGroupSpec,
    ) -> Result<SecurityGroup> {
        let op = Operation::CreateSecurityGroup;
        let network = match &spec.network_id {
            Some(n) => self
                .networks
                .get(n.as_str())
                .map(|r| r.network.id.clone())
                .ok_or_else(|| Error::not_found("network", n).with_operation(op))?,
            None => self
                .networks
                .values()
                .find(|r| r.network.is_default)
                .map(|r| r.network.id.clone())
                .ok_or_else(|| {
                    Error::invalid_argument(
                        "network_id",
                        "none given and the cloud has no default network; name a network",
                    )
                    .with_operation(op)
                })?,
        };
        if let Some((id, _)) = self.groups.iter().find(|(_, r)| {
            r.group.name == spec.name && r.group.network_id.as_ref() == Some(&network)
        }) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "network `{network}` has a security group named `{}` already (`{id}`)",
                    spec.name
                ),
            )
            .with_operation(op)
            .with_resource(format!("security group {id}")));
        }
        let id = self.groups.next_id();
        let record = GroupRecord {
            group: SecurityGroup {
                id: id.clone(),
                name: spec.name.clone(),
                description: spec.description.clone(),
                network_id: Some(network),
                rules: Vec::new(),
                is_default: false,
                tags: spec.tags.clone(),
                owner: spec.owner.clone(),
            },
            rules: BTreeSet::from([all_egress()]),
            members: HashSet::new(),
        };
        let view = record.view();
        self.groups.insert(id, record);
        Ok(view)
    }

    /// Deletes a group no instance is in and no other group's rules name.
    pub(in crate::memory) fn delete_security_group(
        &mut self,
        id: &SecurityGroupId,
        now: Instant,
    ) -> Result<()> {
        let op = Operation::DeleteSecurityGroup;
        self.purge(now);
        let r = self
            .groups
            .get(id)
            .ok_or_else(|| Error::not_found("security group", id).with_operation(op))?;
        if r.group.is_default {
            let network = r.group.network_id.as_ref().map_or("", |n| n.as_str());
            return Err(group_refused(
                op,
                id,
                format!(
                    "security group `{id}` is the default group of network `{network}`; it \
                     goes with its network"
                ),
            ));
        }
        let in_use = r
            .members
            .iter()
            .filter(|k| {
                self.instances
                    .get(k)
                    .is_some_and(|s| s.phase.state(now) != InstanceState::Terminated)
            })
            .count();
        if in_use > 0 {
            let plural = if in_use == 1 { "" } else { "s" };
            return Err(group_refused(
                op,
                id,
                format!(
                    "security group `{id}` is in use by {in_use} instance{plural}; delete \
                     them first"
                ),
            )
            .with_context("instances", in_use.to_string()));
        }
        if let Some((other, _)) = self
            .groups
            .iter()
            .find(|(other, g)| *other != id && g.names(id))
        {
            return Err(group_refused(
                op,
                id,
                format!(
                    "the rules of security group `{other}` name security group `{id}`; \
                     remove those rules first"
                ),
            ));
        }
        self.groups.remove(id);
        Ok(())
    }

    /// Adds rules (checked by the model's rules already); those held already change
    /// nothing. A group peer must exist.
    pub(in crate::memory) fn add_security_rules(
        &mut self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        let op = Operation::AddSecurityRules;
        if self.groups.get(id).is_none() {
            return Err(Error::not_found("security group", id).with_operation(op));
        }
        for r in rules {
            if let RulePeer::Group(g) = &r.peer {
                if self.groups.get(g).is_none() {
                    return Err(Error::not_found("security group", g).with_operation(op));
                }
            }
        }
        let r = self
            .groups
            .get_mut(id)
            .ok_or_else(|| Error::not_found("security group", id).with_operation(op))?;
        r.rules.extend(rules.iter().cloned());
        Ok(r.view())
    }

    /// Removes rules; those not held are no error.
    pub(in crate::memory) fn remove_security_rules(
        &mut self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        let r = self.groups.get_mut(id).ok_or_else(|| {
            Error::not_found("security group", id).with_operation(Operation::RemoveSecurityRules)
        })?;
        for rule in rules {
            r.rules.remove(rule);
        }
        Ok(r.view())
    }
}
