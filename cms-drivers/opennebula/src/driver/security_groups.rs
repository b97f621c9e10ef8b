//! Security groups: OpenNebula's security groups (`one.secgroup.*`).
//!
//! A group's rules are the `RULE` vectors of its template; cms reads each as the
//! [`SecurityRule`]s it stands for and writes each cms rule as one `RULE`:
//!
//! | cms | OpenNebula `RULE` |
//! |---|---|
//! | direction ingress / egress | `RULE_TYPE = INBOUND` / `OUTBOUND` |
//! | protocol tcp, udp, icmp, all | `PROTOCOL = TCP`, `UDP`, `ICMP`, `ALL` |
//! | tcp/udp ports `a..=b` | `RANGE = "a"` (a = b) or `"a:b"`; no RANGE is every port, read as `0..=65535`; a list `"22,80:90"` reads as one rule per item |
//! | icmp type `t` (no code) | `ICMP_TYPE = t`; none: every type |
//! | peer `0.0.0.0/0` | no `IP` and no `NETWORK_ID` (any address) |
//! | peer `a.b.c.d/n` | `IP = a.b.c.d`, `SIZE = 2^(32-n)`; a range that is no CIDR block reads as the blocks that cover it exactly |
//!
//! OpenNebula has no group peers (rules name addresses or virtual networks), so
//! capabilities declare `group_peers = false` and such a rule is `Unsupported`, as is
//! an ICMP code (OpenNebula filters on the ICMP type only). Rules cms cannot express —
//! a virtual network (`NETWORK_ID`), IPv6 addresses, the `IPSEC` and `ICMPV6` protocols
//! — are left out of the cms view and kept untouched when cms changes the group.
//!
//! Adding or removing rules reads the group, edits its RULE set (each rule held once;
//! a RULE some of whose rules are removed is rewritten as the rest) and writes the
//! whole template back with `one.secgroup.update` in replace mode; changes of one group
//! through a driver go one at a time (OpenNebula has no compare-and-set). OpenNebula
//! then updates the rules of the VMs in the group.
//!
//! The default group is OpenNebula's group 0, which every virtual network adds to its
//! NICs (so every instance is in it) and which cannot be deleted. Groups belong to no
//! network in OpenNebula: a spec's `network_id` is checked to exist and the group is
//! the account's. The name, description, owner (`CMS_OWNER`) and tags (`CMS_TAGS`)
//! are kept in the group's template.
//!
//! Instances are put in groups per NIC (`SECURITY_GROUPS` of each NIC at create) and
//! show the groups of all their NICs, group 0 included.

use std::net::Ipv4Addr;

use super::*;

use cms_core::{
    RuleDirection, RulePeer, RuleProtocol, SecurityGroup, SecurityGroupFilter, SecurityGroupId,
    SecurityGroupSpec, SecurityRule,
};

use crate::model::{SecurityGroup as OneGroup, SecurityGroupPool};

/// The id of OpenNebula's default security group.
pub const DEFAULT_GROUP: i64 = 0;

/// The cms rules a `RULE` vector stands for; `None` for one cms cannot express.
pub fn rules_of(rule: &Attributes) -> Option<Vec<SecurityRule>> {
    let protocol = match rule.get("PROTOCOL")?.trim().to_ascii_uppercase().as_str() {
        "TCP" => RuleProtocol::Tcp,
        "UDP" => RuleProtocol::Udp,
        "ICMP" => RuleProtocol::Icmp,
        "ALL" => RuleProtocol::All,
        _ => return None,
    };
    let direction = match rule.get("RULE_TYPE")?.trim().to_ascii_uppercase().as_str() {
        "INBOUND" => RuleDirection::Ingress,
        "OUTBOUND" => RuleDirection::Egress,
        _ => return None,
    };
    let cidrs = match rule.non_empty("IP") {
        Some(ip) => {
            let start: Ipv4Addr = ip.trim().parse().ok()?;
            let size: u64 = rule.non_empty("SIZE")?.trim().parse().ok()?;
            cidrs_of(u32::from(start), size)?
        }
        None if rule.non_empty("NETWORK_ID").is_some() => return None,
        None => vec!["0.0.0.0/0".to_owned()],
    };
    let ports: Vec<(Option<u16>, Option<u16>)> = match protocol {
        RuleProtocol::Tcp | RuleProtocol::Udp => match rule.non_empty("RANGE") {
            None => vec![(Some(0), Some(u16::MAX))],
            Some(range) => range
                .split(',')
                .map(|item| {
                    let (a, b) = match item.trim().split_once(':') {
                        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                        None => {
                            let p: u16 = item.trim().parse().ok()?;
                            (p, p)
                        }
                    };
                    (a <= b).then_some((Some(a), Some(b)))
                })
                .collect::<Option<_>>()?,
        },
        RuleProtocol::Icmp => match rule.non_empty("ICMP_TYPE") {
            None => vec![(None, None)],
            Some(t) => {
                let t: u16 = t.trim().parse().ok().filter(|t| *t <= 255)?;
                vec![(Some(t), None)]
            }
        },
        RuleProtocol::All => vec![(None, None)],
    };
    Some(
        ports
            .iter()
            .flat_map(|(from, to)| {
                cidrs.iter().map(move |c| SecurityRule {
                    direction,
                    protocol,
                    from_port: *from,
                    to_port: *to,
                    peer: RulePeer::Cidr(c.clone()),
                })
            })
            .collect(),
    )
}

/// The CIDR blocks that cover `size` addresses from `start` exactly (at most 64 of
/// them; `None` for a range past the end of the address space or an empty one).
fn cidrs_of(start: u32, size: u64) -> Option<Vec<String>> {
    let end = u64::from(start).checked_add(size)?;
    if size == 0 || end > (1u64 << 32) {
        return None;
    }
    let mut out = Vec::new();
    let mut at = u64::from(start);
    while at < end {
        // The largest aligned block at `at` that fits before `end`.
        let align = if at == 0 {
            32
        } else {
            at.trailing_zeros().min(32)
        };
        let mut bits = align;
        while bits > 0 && at + (1u64 << bits) > end {
            bits -= 1;
        }
        out.push(format!("{}/{}", Ipv4Addr::from(at as u32), 32 - bits));
        at += 1u64 << bits;
        if out.len() > 64 {
            return None;
        }
    }
    Some(out)
}

/// The `RULE` vector of a cms rule (checked by [`check_rule`]).
fn rule_vector(r: &SecurityRule) -> Element {
    let mut attrs = vec![
        (
            "PROTOCOL",
            match r.protocol {
                RuleProtocol::Tcp => "TCP",
                RuleProtocol::Udp => "UDP",
                RuleProtocol::Icmp => "ICMP",
                RuleProtocol::All => "ALL",
            }
            .to_owned(),
        ),
        (
            "RULE_TYPE",
            match r.direction {
                RuleDirection::Ingress => "INBOUND",
                RuleDirection::Egress => "OUTBOUND",
            }
            .to_owned(),
        ),
    ];
    match (r.protocol, r.from_port, r.to_port) {
        (RuleProtocol::Tcp | RuleProtocol::Udp, Some(a), Some(b)) if a == b => {
            attrs.push(("RANGE", a.to_string()))
        }
        (RuleProtocol::Tcp | RuleProtocol::Udp, Some(a), Some(b)) => {
            attrs.push(("RANGE", format!("{a}:{b}")))
        }
        (RuleProtocol::Icmp, Some(t), _) => attrs.push(("ICMP_TYPE", t.to_string())),
        _ => {}
    }
    if let RulePeer::Cidr(c) = &r.peer {
        if let Some((ip, prefix)) = c.split_once('/') {
            let prefix: u32 = prefix.parse().unwrap_or(0);
            if prefix > 0 {
                attrs.push(("IP", ip.to_owned()));
                attrs.push(("SIZE", (1u64 << (32 - prefix)).to_string()));
            }
        }
    }
    vector("RULE", attrs)
}

/// Whether OpenNebula can hold the rule: no group peer, no ICMP code.
fn check_rule(r: &SecurityRule, op: Operation) -> Result<()> {
    let unsupported = |why: &str| {
        Error::new(
            ErrorKind::Unsupported,
            format!("the opennebula driver cannot keep the rule {r:?}: {why}"),
        )
        .with_operation(op)
        .with_context("driver", "opennebula")
    };
    if let RulePeer::Group(_) = r.peer {
        return Err(unsupported(
            "OpenNebula security group rules name addresses or networks, not other groups",
        ));
    }
    if r.protocol == RuleProtocol::Icmp && r.to_port.is_some() {
        return Err(unsupported(
            "OpenNebula filters ICMP by type only; leave the code (`to_port`) out",
        ));
    }
    Ok(())
}

impl OpenNebulaDriver {
    /// The cms view of a security group.
    pub fn security_group_of(&self, g: &OneGroup) -> SecurityGroup {
        let mut rules: Vec<SecurityRule> = g.rules().filter_map(rules_of).flatten().collect();
        rules.sort();
        rules.dedup();
        SecurityGroup {
            id: SecurityGroupId::new(g.id.to_string()),
            name: g.name.clone(),
            description: g.template.get("DESCRIPTION").unwrap_or_default().to_owned(),
            network_id: None,
            rules,
            is_default: g.id == DEFAULT_GROUP,
            tags: tags_of(&g.template),
            owner: if g.uname == self.inner.client.username() {
                g.template.non_empty(ATTR_OWNER).map(str::to_owned)
            } else {
                None
            },
        }
    }

    pub(crate) async fn group_info(&self, id: i64) -> Result<OneGroup> {
        self.call_doc(
            "one.secgroup.info",
            &[Value::Int(id), Value::Bool(false)],
            &Target::security_group(id),
            OneGroup::from_xml,
        )
        .await
    }

    fn group_id(id: &SecurityGroupId) -> Result<i64> {
        parse_oid(id.as_str()).ok_or_else(|| Error::not_found("security group", id))
    }

    /// Checks that the groups exist (OpenNebula ignores unknown groups of a NIC).
    pub(crate) async fn check_groups(&self, ids: &[SecurityGroupId]) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let gid = Self::group_id(id)?;
            self.group_info(gid).await.map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::not_found("security group", id)
                } else {
                    e
                }
            })?;
            out.push(gid);
        }
        Ok(out)
    }

    pub(crate) async fn groups_page(
        &self,
        filter: &SecurityGroupFilter,
        page: &PageRequest,
    ) -> Result<Page<SecurityGroup>> {
        let op = Operation::ListSecurityGroups;
        let limit = page_limit(page);
        let cursor = match &page.token {
            None => None,
            Some(t) => Some(
                t.as_str()
                    .strip_prefix("sg.")
                    .and_then(Cursor::decode)
                    .ok_or_else(|| bad_token(op, t))?,
            ),
        };
        let filtered = *filter != SecurityGroupFilter::default();
        let found = scan(
            |offset, size| {
                self.pool_window_of(
                    "one.secgrouppool.info",
                    "security group",
                    -2,
                    offset,
                    size,
                    |x| SecurityGroupPool::from_xml(x).map(|p| p.groups),
                )
            },
            cursor,
            limit,
            if filtered { FILTER_WINDOW } else { 1 },
            FILTER_BUDGET,
            |g: &OneGroup| filter.matches(&self.security_group_of(g)),
        )
        .await?;
        Ok(Page {
            items: found
                .items
                .iter()
                .map(|g| self.security_group_of(g))
                .collect(),
            next: found
                .next
                .map(|c| PageToken::new(format!("sg.{}", c.encode()))),
        })
    }

    pub(crate) async fn get_group(&self, id: &SecurityGroupId) -> Result<SecurityGroup> {
        let g = self.group_info(Self::group_id(id)?).await?;
        Ok(self.security_group_of(&g))
    }

    pub(crate) async fn create_group(&self, spec: &SecurityGroupSpec) -> Result<SecurityGroup> {
        cms_core::check_security_group_spec(spec)?;
        check_name("name", &spec.name, true)?;
        if let Some(n) = &spec.network_id {
            let nid = parse_oid(n.as_str()).ok_or_else(|| Error::not_found("network", n))?;
            self.vnet_info(nid)
                .await
                .map_err(|e| {
                    if e.kind() == ErrorKind::NotFound {
                        Error::not_found("network", n)
                    } else {
                        e
                    }
                })
                .map_err(|e| e.not_executed(true))?;
        }
        let mut t = vec![Element::leaf("NAME", spec.name.clone())];
        if !spec.description.is_empty() {
            t.push(Element::leaf("DESCRIPTION", spec.description.clone()));
        }
        if let Some(o) = &spec.owner {
            t.push(Element::leaf(ATTR_OWNER, o.clone()));
        }
        if !spec.tags.is_empty() {
            t.push(Element::leaf(
                ATTR_TAGS,
                serde_json::to_string(&spec.tags).unwrap_or_default(),
            ));
        }
        let id = self
            .call_id(
                "one.secgroup.allocate",
                &[Value::Str(template_xml(t))],
                &Target::new_object("security group", &spec.name),
            )
            .await?;
        let g = self.group_info(id).await?;
        Ok(self.security_group_of(&g))
    }

    pub(crate) async fn delete_group(&self, id: &SecurityGroupId) -> Result<()> {
        let gid = Self::group_id(id)?;
        if gid == DEFAULT_GROUP {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot delete security group `{id}`: it is OpenNebula's default group, \
                     which every virtual network adds to its NICs"
                ),
            )
            .with_resource(format!("security group {id}")));
        }
        self.call(
            "one.secgroup.delete",
            &[Value::Int(gid)],
            &Target::security_group(gid),
        )
        .await?;
        Ok(())
    }

    /// Adds (`add`) or removes rules: reads the group, edits its RULEs, writes the whole
    /// template back (replace mode). Changes nothing when nothing changes.
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
        cms_core::check_security_rules(rules, op)?;
        if add {
            for r in rules {
                check_rule(r, op)?;
            }
        }
        let gid = Self::group_id(id)?;
        let _guard = self.inner.group_locks.lock(&gid.to_string()).await;
        let g = self.group_info(gid).await?;
        let mut entries: Vec<Element> = Vec::new();
        let mut held: Vec<SecurityRule> = Vec::new();
        let mut changed = false;
        for (name, value) in &g.template.entries {
            let element = Attributes {
                entries: vec![(name.clone(), value.clone())],
            }
            .to_elements();
            let Attribute::Vector(rule) = value else {
                entries.extend(element);
                continue;
            };
            if name != "RULE" {
                entries.extend(element);
                continue;
            }
            match rules_of(rule) {
                // Rules cms cannot express stay as they are.
                None => entries.extend(element),
                Some(mine) => {
                    let keep: Vec<SecurityRule> = mine
                        .iter()
                        .filter(|r| add || !rules.contains(r))
                        .filter(|r| !held.contains(r))
                        .cloned()
                        .collect();
                    if keep.len() == mine.len() {
                        entries.extend(element);
                    } else {
                        changed = true;
                        entries.extend(keep.iter().map(rule_vector));
                    }
                    held.extend(keep);
                }
            }
        }
        if add {
            for r in rules {
                if !held.contains(r) {
                    held.push(r.clone());
                    entries.push(rule_vector(r));
                    changed = true;
                }
            }
        }
        if changed {
            self.call(
                "one.secgroup.update",
                &[
                    Value::Int(gid),
                    Value::Str(template_xml(entries)),
                    Value::Int(0),
                ],
                &Target::security_group(gid),
            )
            .await?;
            let g = self.group_info(gid).await?;
            return Ok(self.security_group_of(&g));
        }
        Ok(self.security_group_of(&g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        Attributes {
            entries: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Attribute::Single(v.to_string())))
                .collect(),
        }
    }

    #[test]
    fn rules_read_and_write_back_equal() {
        let rules = [
            SecurityRule::tcp_in(22, 22, "0.0.0.0/0"),
            SecurityRule::tcp_in(1000, 2000, "10.0.0.0/8"),
            SecurityRule {
                protocol: RuleProtocol::Icmp,
                from_port: Some(8),
                to_port: None,
                ..SecurityRule::tcp_in(0, 0, "192.0.2.7/32")
            },
            SecurityRule::all(RuleDirection::Egress, RulePeer::Cidr("0.0.0.0/0".into())),
        ];
        for r in rules {
            let v = rule_vector(&r);
            let a = Attributes::from_element(&v);
            assert_eq!(rules_of(&a), Some(vec![r.clone()]), "{v:?}");
        }
    }

    #[test]
    fn opennebula_rules_read_as_cms_rules() {
        let r = rules_of(&attrs(&[
            ("PROTOCOL", "tcp"),
            ("RULE_TYPE", "inbound"),
            ("RANGE", "22,80:90"),
            ("IP", "10.0.0.4"),
            ("SIZE", "6"),
        ]))
        .unwrap();
        let got: Vec<(Option<u16>, String)> = r
            .iter()
            .map(|r| match &r.peer {
                RulePeer::Cidr(c) => (r.from_port, c.clone()),
                RulePeer::Group(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            got,
            [
                (Some(22), "10.0.0.4/30".into()),
                (Some(22), "10.0.0.8/31".into()),
                (Some(80), "10.0.0.4/30".into()),
                (Some(80), "10.0.0.8/31".into()),
            ]
        );
        let any = rules_of(&attrs(&[("PROTOCOL", "UDP"), ("RULE_TYPE", "OUTBOUND")])).unwrap();
        assert_eq!((any[0].from_port, any[0].to_port), (Some(0), Some(65535)));
        for odd in [
            attrs(&[("PROTOCOL", "IPSEC"), ("RULE_TYPE", "INBOUND")]),
            attrs(&[
                ("PROTOCOL", "TCP"),
                ("RULE_TYPE", "INBOUND"),
                ("NETWORK_ID", "3"),
            ]),
            attrs(&[
                ("PROTOCOL", "TCP"),
                ("RULE_TYPE", "INBOUND"),
                ("IP", "2001:db8::1"),
                ("SIZE", "1"),
            ]),
            attrs(&[("PROTOCOL", "TCP"), ("RULE_TYPE", "SIDEWAYS")]),
            attrs(&[
                ("PROTOCOL", "TCP"),
                ("RULE_TYPE", "INBOUND"),
                ("RANGE", "9:1"),
            ]),
        ] {
            assert_eq!(rules_of(&odd), None, "{odd:?}");
        }
    }

    #[test]
    fn ranges_split_into_blocks() {
        assert_eq!(cidrs_of(0, 1 << 32), Some(vec!["0.0.0.0/0".into()]));
        assert_eq!(
            cidrs_of(u32::from(Ipv4Addr::new(10, 0, 0, 0)), 256),
            Some(vec!["10.0.0.0/24".into()])
        );
        assert_eq!(cidrs_of(u32::MAX, 2), None);
        assert_eq!(cidrs_of(5, 0), None);
    }
}
