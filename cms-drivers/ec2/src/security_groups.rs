//! VPC security groups: their operations, and the mapping of EC2's `IpPermission`s to
//! cms rules and back.
//!
//! A cms network is a subnet, and EC2 scopes groups by VPC: a group is made in the VPC
//! of the network the spec names (the driver's VPC when it names none, see
//! [`Ec2Driver::vpc`]), and shows as its network the one it was made for (kept in the
//! `cms:network` tag), or, for groups made outside cms (the VPC's `default` group
//! among them), the VPC's first subnet: of its default subnets the one with the lowest
//! id, else of all its subnets (see [`Ec2Driver::first_subnets`]). A group made for no
//! network goes to the driver's VPC and is tagged with that VPC's first subnet.
//!
//! Rules: an `IpPermission` is a protocol and a port range with a list of peers
//! (`IpRanges` and `UserIdGroupPairs`); each (permission, peer) is one cms rule, so
//! rules read back as they were added:
//!
//! | EC2 | cms |
//! |---|---|
//! | `IpProtocol` tcp (6), udp (17), icmp (1), -1 (all) | `protocol` tcp, udp, icmp, all |
//! | `FromPort` / `ToPort` of tcp and udp | `from_port` / `to_port` |
//! | `FromPort` / `ToPort` of icmp: type and code, -1 for all | `from_port` / `to_port`, absent for all |
//! | `IpRanges` item `CidrIp` | peer `cidr` |
//! | `UserIdGroupPairs` item `GroupId` | peer `group` |
//! | `IpPermissionsEgress` | direction `egress` |
//!
//! Permissions of other protocols, IPv6 ranges and prefix lists have no cms form and
//! are not shown (nor touched). New groups keep EC2's egress rule (everything to
//! `0.0.0.0/0`), shown as a rule like any other, which can be removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_ec2::types as ec2;
use cms_core::{
    check_security_group_spec, check_security_rules, Error, ErrorKind, NetworkId, Operation, Page,
    PageRequest, Result, RuleDirection, RulePeer, RuleProtocol, SecurityGroup, SecurityGroupFilter,
    SecurityGroupId, SecurityGroupSpec, SecurityRule,
};

use crate::driver::{
    ec2_page, fetch_parts, listing, Ec2Driver, LIVE_STATES, MAX_PAGE, MIN_EC2_PAGE,
};
use crate::model::{self, NameTag, OWNER_TAG};

/// The network (subnet) a group was made for.
const NETWORK_TAG: &str = "cms:network";
/// Marks a group made without a description: EC2 requires one, so the group's name
/// is sent in its place and the group shows an empty description.
const NO_DESCRIPTION_TAG: &str = "cms:no-description";
/// The name of the group EC2 makes in every VPC, which cannot be deleted.
const DEFAULT_GROUP: &str = "default";

fn protocol_of(p: &str) -> Option<RuleProtocol> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Some(RuleProtocol::Tcp),
        "udp" | "17" => Some(RuleProtocol::Udp),
        "icmp" | "1" => Some(RuleProtocol::Icmp),
        "-1" | "all" => Some(RuleProtocol::All),
        _ => None,
    }
}

fn ec2_protocol(p: RuleProtocol) -> &'static str {
    match p {
        RuleProtocol::Tcp => "tcp",
        RuleProtocol::Udp => "udp",
        RuleProtocol::Icmp => "icmp",
        RuleProtocol::All => "-1",
    }
}

/// The cms rules of EC2 permissions (see the module's table), each once, sorted.
pub(crate) fn rules_of(
    perms: &[ec2::IpPermission],
    direction: RuleDirection,
) -> impl Iterator<Item = SecurityRule> + '_ {
    perms.iter().flat_map(move |p| {
        let protocol = p.ip_protocol().and_then(protocol_of);
        let port = |v: Option<i32>| v.filter(|v| *v >= 0).and_then(|v| u16::try_from(v).ok());
        let (from_port, to_port) = match protocol {
            // EC2 shows every port of tcp and udp as 0-65535.
            Some(RuleProtocol::Tcp | RuleProtocol::Udp) => (
                Some(port(p.from_port()).unwrap_or(0)),
                Some(port(p.to_port()).unwrap_or(u16::MAX)),
            ),
            Some(RuleProtocol::Icmp) => (port(p.from_port()), port(p.to_port())),
            _ => (None, None),
        };
        let peers = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .map(|c| RulePeer::Cidr(c.to_owned()))
            .chain(
                p.user_id_group_pairs()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .map(|g| RulePeer::Group(SecurityGroupId::new(g))),
            )
            .collect::<Vec<_>>();
        protocol.into_iter().flat_map(move |protocol| {
            peers.clone().into_iter().map(move |peer| SecurityRule {
                direction,
                protocol,
                from_port,
                to_port,
                peer,
            })
        })
    })
}

/// The cms rules of a group, ingress then egress, each once, in a stable order.
fn group_rules(g: &ec2::SecurityGroup) -> Vec<SecurityRule> {
    let set: BTreeSet<SecurityRule> = rules_of(g.ip_permissions(), RuleDirection::Ingress)
        .chain(rules_of(g.ip_permissions_egress(), RuleDirection::Egress))
        .collect();
    set.into_iter().collect()
}

/// A protocol and its ports: what one EC2 permission is about.
type PortRange = (RuleProtocol, Option<u16>, Option<u16>);

/// EC2 permissions for cms rules of one direction: one permission per protocol and
/// port range, with its peers.
pub(crate) fn permissions<'a>(
    rules: impl IntoIterator<Item = &'a SecurityRule>,
) -> Vec<ec2::IpPermission> {
    let mut by_range: BTreeMap<PortRange, Vec<&RulePeer>> = BTreeMap::new();
    for r in rules {
        by_range
            .entry((r.protocol, r.from_port, r.to_port))
            .or_default()
            .push(&r.peer);
    }
    by_range
        .into_iter()
        .map(|((protocol, from, to), peers)| {
            let ports = match protocol {
                RuleProtocol::All => (None, None),
                RuleProtocol::Icmp => (
                    Some(from.map_or(-1, i32::from)),
                    Some(to.map_or(-1, i32::from)),
                ),
                RuleProtocol::Tcp | RuleProtocol::Udp => (from.map(i32::from), to.map(i32::from)),
            };
            let mut p = ec2::IpPermission::builder()
                .ip_protocol(ec2_protocol(protocol))
                .set_from_port(ports.0)
                .set_to_port(ports.1);
            for peer in peers {
                p = match peer {
                    RulePeer::Cidr(c) => p.ip_ranges(ec2::IpRange::builder().cidr_ip(c).build()),
                    RulePeer::Group(g) => p.user_id_group_pairs(
                        ec2::UserIdGroupPair::builder().group_id(g.as_str()).build(),
                    ),
                };
            }
            p.build()
        })
        .collect()
}

/// An EC2 security group as a cms group, shown in `network`; `None` without id.
pub(crate) fn group(g: &ec2::SecurityGroup, network: Option<NetworkId>) -> Option<SecurityGroup> {
    let id = g.group_id()?;
    let tags = g.tags();
    let name = g.group_name().unwrap_or_default();
    Some(SecurityGroup {
        id: SecurityGroupId::new(id),
        name: name.to_owned(),
        description: if model::tag_value(tags, NO_DESCRIPTION_TAG).is_some() {
            String::new()
        } else {
            g.description().unwrap_or_default().to_owned()
        },
        network_id: network,
        rules: group_rules(g),
        is_default: name == DEFAULT_GROUP,
        tags: model::user_tags(tags),
        owner: model::tag_value(tags, OWNER_TAG)
            .filter(|o| !o.is_empty())
            .map(str::to_owned),
    })
}

/// A network a group listing is limited to: the subnet, its VPC, and whether it is the
/// VPC's first subnet (which the VPC's groups made outside cms show).
#[derive(Debug)]
struct NetworkScope {
    id: String,
    vpc: String,
    first: bool,
}

/// One `DescribeSecurityGroups` listing of a group listing; `untagged_only` keeps the
/// groups without a `cms:network` tag (those that show the VPC's first subnet).
#[derive(Debug)]
struct Part {
    filters: Vec<ec2::Filter>,
    untagged_only: bool,
}

/// The `DescribeSecurityGroups` listings a group listing is made of, one after the
/// other, so that the owner and the network go down to EC2 and pages are exact:
///
/// | filter | listings |
/// |---|---|
/// | no owner, no network | every group (of the configured VPC, when there is one) |
/// | no owner, network | the groups made for it (`tag:cms:network`); for the VPC's first subnet also the VPC's groups made outside cms |
/// | owner | the owner's groups (`tag:cms:owner`, and `tag:cms:network` with a network) |
/// | owner, default groups too | the owner's groups, then the VPCs' `default` groups (with a network: its VPC's, when the network is the one they show) |
///
/// Ids (`group-id`), tags and the configured VPC (`vpc-id`) go down on each.
fn plan(
    filter: &SecurityGroupFilter,
    vpc: Option<&str>,
    network: Option<&NetworkScope>,
) -> Vec<Part> {
    let mut base = Vec::new();
    if !filter.ids.is_empty() {
        base.push(model::filter(
            "group-id",
            filter.ids.iter().map(|i| i.as_str()),
        ));
    }
    base.extend(model::tag_filters(&filter.tags));
    if let Some(v) = vpc {
        base.push(model::filter("vpc-id", [v]));
    }
    let with = |extra: Vec<ec2::Filter>, untagged_only: bool| Part {
        filters: base.iter().cloned().chain(extra).collect(),
        untagged_only,
    };
    let network_tag =
        |s: &NetworkScope| model::filter(format!("tag:{NETWORK_TAG}"), [s.id.as_str()]);
    let mut parts = Vec::new();
    match (&filter.owner, network) {
        (None, None) => parts.push(with(Vec::new(), false)),
        (None, Some(s)) => {
            parts.push(with(vec![network_tag(s)], false));
            if s.first {
                parts.push(with(vec![model::filter("vpc-id", [s.vpc.as_str()])], true));
            }
        }
        (Some(o), network) => {
            if model::plain(o) {
                let mut extra = vec![model::filter(format!("tag:{OWNER_TAG}"), [o.as_str()])];
                extra.extend(network.map(network_tag));
                parts.push(with(extra, false));
            }
            if filter.include_default {
                let default = model::filter("group-name", [DEFAULT_GROUP]);
                match network {
                    None => parts.push(with(vec![default], false)),
                    Some(s) if s.first => parts.push(with(
                        vec![default, model::filter("vpc-id", [s.vpc.as_str()])],
                        true,
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    parts
}

impl Ec2Driver {
    /// The default group of the VPC an instance made in `subnet` (or in no subnet: the
    /// default VPC) goes to, for an instance made in no group: EC2 puts it there,
    /// some EC2-compatible servers (moto) in none, so the driver names it. Best
    /// effort: `None` when it cannot be found (EC2 then does as it does), and kept
    /// once found (a default group lives as long as its VPC).
    pub(crate) async fn default_group_for(&self, subnet: Option<&NetworkId>) -> Option<String> {
        let op = Operation::CreateInstance;
        let key = subnet.map(|s| s.as_str().to_owned()).unwrap_or_default();
        if let Some(g) = self.known_default_group(&key) {
            return Some(g);
        }
        let found = async {
            let vpc = match subnet {
                Some(s) => self.vpc_of(s, op).await?,
                None => self
                    .ec2()
                    .describe_vpcs()
                    .filters(model::filter("is-default", ["true"]))
                    .send()
                    .await
                    .map_err(self.fail(op, None))?
                    .vpcs()
                    .iter()
                    .find_map(|v| v.vpc_id())
                    .map(str::to_owned),
            };
            let Some(vpc) = vpc else {
                return Ok(None);
            };
            let out = self
                .ec2()
                .describe_security_groups()
                .filters(model::filter("vpc-id", [vpc.as_str()]))
                .filters(model::filter("group-name", [DEFAULT_GROUP]))
                .send()
                .await
                .map_err(self.fail(op, None))?;
            Ok::<_, Error>(
                out.security_groups()
                    .iter()
                    .find(|g| g.group_name() == Some(DEFAULT_GROUP) && g.vpc_id() == Some(&vpc))
                    .and_then(|g| g.group_id())
                    .map(str::to_owned),
            )
        };
        match found.await {
            Ok(Some(g)) => {
                self.remember_default_group(key, g.clone());
                Some(g)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "the default security group was not found; EC2 chooses");
                None
            }
        }
    }

    /// The first subnet of each of `vpcs`: of its default subnets (EC2's, one per
    /// zone) the one with the lowest id, else of all. Groups made outside cms show
    /// it as their network, which stays the same while subnets come and go (a default
    /// VPC's default subnets stay).
    async fn first_subnets(
        &self,
        vpcs: impl IntoIterator<Item = &str>,
        op: Operation,
    ) -> Result<HashMap<String, String>> {
        let vpcs: BTreeSet<&str> = vpcs.into_iter().collect();
        // (not a default subnet, id): default subnets first, then by id.
        let mut best: HashMap<String, (bool, String)> = HashMap::new();
        if vpcs.is_empty() {
            return Ok(HashMap::new());
        }
        let mut next: Option<String> = None;
        loop {
            let out = self
                .ec2()
                .describe_subnets()
                .filters(model::filter("vpc-id", vpcs.iter().copied()))
                .max_results(MAX_PAGE as i32)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(self.fail(op, None))?;
            for s in out.subnets() {
                if let (Some(vpc), Some(id)) = (s.vpc_id(), s.subnet_id()) {
                    let key = (!s.default_for_az().unwrap_or(false), id.to_owned());
                    let e = best.entry(vpc.to_owned()).or_insert_with(|| key.clone());
                    if key < *e {
                        *e = key;
                    }
                }
            }
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) => next = Some(t.to_owned()),
                None => return Ok(best.into_iter().map(|(v, (_, s))| (v, s)).collect()),
            }
        }
    }

    /// The VPC of a network (subnet); `None` when EC2 does not know it.
    async fn vpc_of(&self, network: &NetworkId, op: Operation) -> Result<Option<String>> {
        // A filter, not `SubnetIds`: an unknown subnet is no error here.
        let out = self
            .ec2()
            .describe_subnets()
            .filters(model::filter("subnet-id", [network.as_str()]))
            .send()
            .await
            .map_err(self.fail(op, Some(format!("network {network}"))))?;
        Ok(out
            .subnets()
            .iter()
            .find(|s| s.subnet_id() == Some(network.as_str()))
            .and_then(|s| s.vpc_id())
            .map(str::to_owned))
    }

    /// The networks groups show: the one in their `cms:network` tag, else the first
    /// subnet of their VPC.
    async fn groups_with_networks(
        &self,
        groups: &[ec2::SecurityGroup],
        op: Operation,
    ) -> Result<Vec<SecurityGroup>> {
        let first = self
            .first_subnets(
                groups
                    .iter()
                    .filter(|g| model::tag_value(g.tags(), NETWORK_TAG).is_none())
                    .filter_map(|g| g.vpc_id()),
                op,
            )
            .await?;
        Ok(groups
            .iter()
            .filter_map(|g| {
                let network = model::tag_value(g.tags(), NETWORK_TAG)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .or_else(|| g.vpc_id().and_then(|v| first.get(v).cloned()))
                    .map(NetworkId::new);
                group(g, network)
            })
            .collect())
    }

    pub(crate) async fn security_groups_page(
        &self,
        filter: &SecurityGroupFilter,
        page: &PageRequest,
    ) -> Result<Page<SecurityGroup>> {
        let op = Operation::ListSecurityGroups;
        let vpc = self.config().vpc_id.as_deref();
        let scope = format!("security-groups|{vpc:?}|{filter:?}");
        let network = match &filter.network_id {
            None => None,
            Some(n) => match self.vpc_of(n, op).await? {
                Some(v) => {
                    let first = self.first_subnets([v.as_str()], op).await?;
                    Some(NetworkScope {
                        id: n.as_str().to_owned(),
                        first: first.get(&v).map(String::as_str) == Some(n.as_str()),
                        vpc: v,
                    })
                }
                // An unknown network has no groups.
                None => {
                    model::Cursor::decode(page.token.as_ref(), &scope, op)?;
                    return Ok(Page::last(Vec::new()));
                }
            },
        };
        let parts = plan(filter, vpc, network.as_ref());
        if parts.is_empty() {
            model::Cursor::decode(page.token.as_ref(), &scope, op)?;
            return Ok(Page::last(Vec::new()));
        }
        let parts = &parts;
        listing(
            &self.pages().security_groups,
            &scope,
            page,
            MAX_PAGE,
            op,
            |token, limit| {
                fetch_parts(
                    token,
                    limit,
                    parts.len(),
                    op,
                    move |part, token| async move {
                        let p = &parts[part];
                        let out = self
                            .ec2()
                            .describe_security_groups()
                            .set_filters((!p.filters.is_empty()).then(|| p.filters.clone()))
                            .max_results(ec2_page(limit, MAX_PAGE))
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(self.fail(op, None))?;
                        let raw: Vec<ec2::SecurityGroup> = out
                            .security_groups()
                            .iter()
                            .filter(|g| {
                                !p.untagged_only
                                    || model::tag_value(g.tags(), NETWORK_TAG).is_none()
                            })
                            .cloned()
                            .collect();
                        // Everything went down to EC2; the filter is checked once more
                        // for servers that do not keep every filter.
                        let items = self
                            .groups_with_networks(&raw, op)
                            .await?
                            .into_iter()
                            .filter(|g| filter.matches(g))
                            .collect();
                        Ok((items, out.next_token().map(str::to_owned)))
                    },
                )
            },
        )
        .await
    }

    async fn describe_group(
        &self,
        id: &SecurityGroupId,
        op: Operation,
    ) -> Result<ec2::SecurityGroup> {
        let out = self
            .ec2()
            .describe_security_groups()
            .group_ids(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("security group {id}"))))?;
        out.security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id.as_str()))
            .cloned()
            .ok_or_else(|| Error::not_found("security group", id).with_operation(op))
    }

    async fn mapped_group(&self, g: &ec2::SecurityGroup, op: Operation) -> Result<SecurityGroup> {
        self.groups_with_networks(std::slice::from_ref(g), op)
            .await?
            .pop()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Backend,
                    "EC2 described a security group without id",
                )
                .with_operation(op)
            })
    }

    pub(crate) async fn security_group_by_id(
        &self,
        id: &SecurityGroupId,
        op: Operation,
    ) -> Result<SecurityGroup> {
        let g = self.describe_group(id, op).await?;
        self.mapped_group(&g, op).await
    }

    /// CreateSecurityGroup in the VPC of the spec's network (the driver's VPC when it
    /// names none).
    pub(crate) async fn make_security_group(
        &self,
        spec: &SecurityGroupSpec,
    ) -> Result<SecurityGroup> {
        let op = Operation::CreateSecurityGroup;
        check_security_group_spec(spec)?;
        model::check_create_tags(&spec.tags, NameTag::Refused, op)?;
        if spec.name.eq_ignore_ascii_case(DEFAULT_GROUP) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "every VPC has its group named `default`; choose another name",
            )
            .with_operation(op)
            .with_resource(format!("security group {}", spec.name)));
        }
        // The group shows the network it was made for; made for none, it goes to the
        // driver's VPC and shows that VPC's first subnet, as groups made outside cms do.
        let (vpc, network) = match &spec.network_id {
            Some(n) => {
                let vpc = self
                    .vpc_of(n, op)
                    .await?
                    .ok_or_else(|| Error::not_found("network", n).with_operation(op))?;
                (vpc, Some(n.as_str().to_owned()))
            }
            None => {
                let vpc = self.vpc(op).await?.to_owned();
                let first = self.first_subnets([vpc.as_str()], op).await?.remove(&vpc);
                (vpc, first)
            }
        };
        let mut extra: Vec<(&str, &str)> = Vec::new();
        if let Some(n) = &network {
            extra.push((NETWORK_TAG, n.as_str()));
        }
        let description = if spec.description.is_empty() {
            extra.push((NO_DESCRIPTION_TAG, "true"));
            spec.name.as_str()
        } else {
            spec.description.as_str()
        };
        let tags = model::create_tags(&spec.tags, None, spec.owner.as_deref(), &extra);
        let out = self
            .ec2()
            .create_security_group()
            .group_name(&spec.name)
            .description(description)
            .vpc_id(vpc)
            .set_tag_specifications(model::tag_spec(ec2::ResourceType::SecurityGroup, tags))
            .send()
            .await
            .map_err(self.fail(op, Some(format!("security group {}", spec.name))))?;
        let id = out.group_id().map(SecurityGroupId::new).ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                "CreateSecurityGroup answered no group id",
            )
            .with_operation(op)
        })?;
        self.security_group_by_id(&id, op).await
    }

    /// DeleteSecurityGroup, after the checks EC2 makes and moto does not: the default
    /// group, a group instances are in, a group other groups' rules name, are
    /// `InvalidState`.
    pub(crate) async fn remove_security_group(&self, id: &SecurityGroupId) -> Result<()> {
        let op = Operation::DeleteSecurityGroup;
        let resource = format!("security group {id}");
        let g = self.describe_group(id, op).await?;
        let refuse = |why: String| {
            Error::new(ErrorKind::InvalidState, why)
                .with_operation(op)
                .with_resource(resource.clone())
        };
        if g.group_name() == Some(DEFAULT_GROUP) {
            return Err(refuse(format!(
                "`{id}` is the default group of its VPC, which cannot be deleted"
            )));
        }
        let users = self
            .ec2()
            .describe_instances()
            .filters(model::filter("instance.group-id", [id.as_str()]))
            .filters(model::filter("instance-state-name", LIVE_STATES))
            .max_results(MIN_EC2_PAGE as i32)
            .send()
            .await
            .map_err(self.fail(op, Some(resource.clone())))?;
        let in_use: Vec<&str> = users
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id())
            .collect();
        if !in_use.is_empty() {
            return Err(refuse(format!(
                "security group `{id}` has instances in it ({}); delete them or move them \
                 to other groups first",
                in_use.join(", ")
            )));
        }
        let mut naming: BTreeSet<String> = BTreeSet::new();
        for key in ["ip-permission.group-id", "egress.ip-permission.group-id"] {
            let out = self
                .ec2()
                .describe_security_groups()
                .filters(model::filter(key, [id.as_str()]))
                .send()
                .await
                .map_err(self.fail(op, Some(resource.clone())))?;
            naming.extend(
                out.security_groups()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .filter(|g| *g != id.as_str())
                    .map(str::to_owned),
            );
        }
        if !naming.is_empty() {
            return Err(refuse(format!(
                "rules of security group{} {} name `{id}`; remove those rules first",
                if naming.len() == 1 { "" } else { "s" },
                naming.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        self.ec2()
            .delete_security_group()
            .group_id(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(resource)))?;
        Ok(())
    }

    /// `NotFound` for a group a rule names that does not exist (EC2 would say so in
    /// terms of the group being changed).
    async fn check_peers(&self, rules: &[SecurityRule], op: Operation) -> Result<()> {
        let peers: BTreeSet<&str> = rules
            .iter()
            .filter_map(|r| match &r.peer {
                RulePeer::Group(g) => Some(g.as_str()),
                RulePeer::Cidr(_) => None,
            })
            .collect();
        if peers.is_empty() {
            return Ok(());
        }
        let out = self
            .ec2()
            .describe_security_groups()
            .filters(model::filter("group-id", peers.iter().copied()))
            .send()
            .await
            .map_err(self.fail(op, None))?;
        let known: BTreeSet<&str> = out
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .collect();
        match peers.iter().find(|p| !known.contains(**p)) {
            Some(p) => Err(Error::new(
                ErrorKind::NotFound,
                format!("security group `{p}`, which a rule names, not found"),
            )
            .with_operation(op)
            .with_resource(format!("security group {p}"))),
            None => Ok(()),
        }
    }

    /// Adds or removes rules: reads the group, changes only what must change (the
    /// rules it does not hold, or those it holds), and reads it again. EC2 refuses a
    /// rule held twice (`InvalidPermission.Duplicate`) or one not held
    /// (`InvalidPermission.NotFound`): when another change came in between, the group
    /// is read again and the change made once more.
    pub(crate) async fn change_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
        add: bool,
    ) -> Result<SecurityGroup> {
        let op = if add {
            Operation::AddSecurityRules
        } else {
            Operation::RemoveSecurityRules
        };
        check_security_rules(rules, op)?;
        let resource = format!("security group {id}");
        let mut retried = false;
        loop {
            let g = self.describe_group(id, op).await?;
            let held: BTreeSet<SecurityRule> = group_rules(&g).into_iter().collect();
            let wanted: BTreeSet<&SecurityRule> = rules.iter().collect();
            let change: Vec<&SecurityRule> = wanted
                .into_iter()
                .filter(|r| held.contains(*r) != add)
                .collect();
            if change.is_empty() {
                return self.mapped_group(&g, op).await;
            }
            if add && !retried {
                self.check_peers(rules, op).await?;
            }
            let ingress = permissions(
                change
                    .iter()
                    .copied()
                    .filter(|r| r.direction == RuleDirection::Ingress),
            );
            let egress = permissions(
                change
                    .iter()
                    .copied()
                    .filter(|r| r.direction == RuleDirection::Egress),
            );
            let result = self
                .send_rules(id, ingress, egress, add, op, &resource)
                .await;
            match result {
                Err(e)
                    if !retried
                        && matches!(
                            e.context_value("ec2_code"),
                            Some("InvalidPermission.Duplicate" | "InvalidPermission.NotFound")
                        ) =>
                {
                    retried = true;
                }
                Err(e) => return Err(e),
                Ok(()) => return self.security_group_by_id(id, op).await,
            }
        }
    }

    async fn send_rules(
        &self,
        id: &SecurityGroupId,
        ingress: Vec<ec2::IpPermission>,
        egress: Vec<ec2::IpPermission>,
        add: bool,
        op: Operation,
        resource: &str,
    ) -> Result<()> {
        if !ingress.is_empty() {
            if add {
                self.ec2()
                    .authorize_security_group_ingress()
                    .group_id(id.as_str())
                    .set_ip_permissions(Some(ingress))
                    .send()
                    .await
                    .map_err(self.fail(op, Some(resource.to_owned())))?;
            } else {
                self.ec2()
                    .revoke_security_group_ingress()
                    .group_id(id.as_str())
                    .set_ip_permissions(Some(ingress))
                    .send()
                    .await
                    .map_err(self.fail(op, Some(resource.to_owned())))?;
            }
        }
        if !egress.is_empty() {
            if add {
                self.ec2()
                    .authorize_security_group_egress()
                    .group_id(id.as_str())
                    .set_ip_permissions(Some(egress))
                    .send()
                    .await
                    .map_err(self.fail(op, Some(resource.to_owned())))?;
            } else {
                self.ec2()
                    .revoke_security_group_egress()
                    .group_id(id.as_str())
                    .set_ip_permissions(Some(egress))
                    .send()
                    .await
                    .map_err(self.fail(op, Some(resource.to_owned())))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        direction: RuleDirection,
        protocol: RuleProtocol,
        ports: (Option<u16>, Option<u16>),
        peer: RulePeer,
    ) -> SecurityRule {
        SecurityRule {
            direction,
            protocol,
            from_port: ports.0,
            to_port: ports.1,
            peer,
        }
    }

    #[test]
    fn rules_round_trip_through_permissions() {
        use RuleDirection::*;
        use RuleProtocol::*;
        let cidr = |c: &str| RulePeer::Cidr(c.into());
        let sg = |g: &str| RulePeer::Group(SecurityGroupId::new(g));
        let rules = vec![
            rule(Ingress, Tcp, (Some(22), Some(22)), cidr("10.0.0.0/8")),
            rule(Ingress, Tcp, (Some(22), Some(22)), cidr("192.0.2.0/24")),
            rule(Ingress, Tcp, (Some(22), Some(22)), sg("sg-1")),
            rule(Ingress, Udp, (Some(53), Some(54)), cidr("0.0.0.0/0")),
            rule(Ingress, Icmp, (None, None), cidr("0.0.0.0/0")),
            rule(Ingress, Icmp, (Some(8), None), cidr("0.0.0.0/0")),
            rule(Ingress, Icmp, (Some(3), Some(4)), cidr("0.0.0.0/0")),
            rule(Ingress, All, (None, None), sg("sg-2")),
        ];
        let perms = permissions(&rules);
        // One permission per protocol and range.
        assert_eq!(perms.len(), 6);
        let ssh = perms
            .iter()
            .find(|p| p.ip_protocol() == Some("tcp"))
            .unwrap();
        assert_eq!((ssh.from_port(), ssh.to_port()), (Some(22), Some(22)));
        assert_eq!(ssh.ip_ranges().len(), 2);
        assert_eq!(ssh.user_id_group_pairs().len(), 1);
        let all = perms
            .iter()
            .find(|p| p.ip_protocol() == Some("-1"))
            .unwrap();
        assert_eq!((all.from_port(), all.to_port()), (None, None));
        let ping = perms
            .iter()
            .find(|p| p.ip_protocol() == Some("icmp") && p.from_port() == Some(8))
            .unwrap();
        assert_eq!(ping.to_port(), Some(-1));
        let mut back: Vec<SecurityRule> = rules_of(&perms, Ingress).collect();
        back.sort();
        let mut want = rules.clone();
        want.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn permissions_ec2_writes_otherwise_still_read() {
        let p = ec2::IpPermission::builder()
            .ip_protocol("6")
            .ip_ranges(ec2::IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .ipv6_ranges(ec2::Ipv6Range::builder().cidr_ipv6("::/0").build())
            .build();
        let esp = ec2::IpPermission::builder()
            .ip_protocol("50")
            .ip_ranges(ec2::IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        let all = ec2::IpPermission::builder()
            .ip_protocol("-1")
            .from_port(-1)
            .to_port(-1)
            .ip_ranges(ec2::IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        let got: Vec<SecurityRule> = rules_of(&[p, esp, all], RuleDirection::Egress).collect();
        assert_eq!(
            got,
            vec![
                rule(
                    RuleDirection::Egress,
                    RuleProtocol::Tcp,
                    (Some(0), Some(65535)),
                    RulePeer::Cidr("0.0.0.0/0".into())
                ),
                SecurityRule::all(RuleDirection::Egress, RulePeer::Cidr("0.0.0.0/0".into())),
            ]
        );
    }

    #[test]
    fn groups_map_description_default_and_owner() {
        let g = ec2::SecurityGroup::builder()
            .group_id("sg-1")
            .group_name("web")
            .description("web")
            .tags(model::tag(NO_DESCRIPTION_TAG, "true"))
            .tags(model::tag(OWNER_TAG, "alice"))
            .tags(model::tag("env", "prod"))
            .ip_permissions_egress(
                ec2::IpPermission::builder()
                    .ip_protocol("-1")
                    .ip_ranges(ec2::IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .build();
        let got = group(&g, Some(NetworkId::new("subnet-1"))).unwrap();
        assert_eq!(got.description, "");
        assert!(!got.is_default);
        assert_eq!(got.owner.as_deref(), Some("alice"));
        assert_eq!(got.tags.keys().collect::<Vec<_>>(), ["env"]);
        assert_eq!(
            got.rules,
            vec![SecurityRule::all(
                RuleDirection::Egress,
                RulePeer::Cidr("0.0.0.0/0".into())
            )]
        );
        let default = ec2::SecurityGroup::builder()
            .group_id("sg-2")
            .group_name("default")
            .build();
        assert!(group(&default, None).unwrap().is_default);
    }
}
