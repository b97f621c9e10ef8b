//! Firewalls: security groups and their rules.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{check_id, check_name, check_owner, check_tags, NetworkId, Tags};

id_type!(
    /// The backend's id of a security group (EC2 `sg-…`, a Neutron security group UUID, an OpenNebula security group number).
    SecurityGroupId
);

/// Which traffic a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RuleDirection {
    /// Traffic to the instances.
    Ingress,
    /// Traffic from the instances.
    Egress,
}

impl RuleDirection {
    /// `ingress` or `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleDirection::Ingress => "ingress",
            RuleDirection::Egress => "egress",
        }
    }
}

/// The protocol a rule lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RuleProtocol {
    Tcp,
    Udp,
    Icmp,
    /// Every protocol (EC2's `-1`, OpenNebula's `ALL`, Neutron's no protocol).
    All,
}

impl RuleProtocol {
    /// `tcp`, `udp`, `icmp` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleProtocol::Tcp => "tcp",
            RuleProtocol::Udp => "udp",
            RuleProtocol::Icmp => "icmp",
            RuleProtocol::All => "all",
        }
    }
}

impl fmt::Display for RuleProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The other end of a rule's traffic: where it comes from (ingress) or goes to
/// (egress). In JSON `{"cidr": "0.0.0.0/0"}` or `{"group": "sg-…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RulePeer {
    /// An IPv4 range, in canonical form (`0.0.0.0/0`, `10.0.0.0/8`, `192.0.2.7/32`).
    Cidr(String),
    /// The instances of a security group.
    Group(SecurityGroupId),
}

/// One rule of a security group: traffic it lets through.
///
/// Ports: for `tcp` and `udp`, `from_port..=to_port` (both required); for `icmp`,
/// `from_port` is the ICMP type and `to_port` the code, each absent for all of them;
/// for `all`, both absent. Rules are values: a group holds a rule once, adding it
/// again changes nothing, and a rule read back equals the rule added.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityRule {
    pub direction: RuleDirection,
    pub protocol: RuleProtocol,
    #[serde(default, deserialize_with = "super::whole::u16")]
    pub from_port: Option<u16>,
    #[serde(default, deserialize_with = "super::whole::u16")]
    pub to_port: Option<u16>,
    pub peer: RulePeer,
}

impl SecurityRule {
    /// Ingress on TCP ports `from..=to` from a CIDR range.
    pub fn tcp_in(from: u16, to: u16, cidr: impl Into<String>) -> Self {
        SecurityRule {
            direction: RuleDirection::Ingress,
            protocol: RuleProtocol::Tcp,
            from_port: Some(from),
            to_port: Some(to),
            peer: RulePeer::Cidr(cidr.into()),
        }
    }

    /// Every protocol, in `direction`, to or from `peer`.
    pub fn all(direction: RuleDirection, peer: RulePeer) -> Self {
        SecurityRule {
            direction,
            protocol: RuleProtocol::All,
            from_port: None,
            to_port: None,
            peer,
        }
    }

    /// Checks the rule by the model's rules (see the type's documentation) and a CIDR
    /// peer in canonical IPv4 form; otherwise `InvalidArgument` naming `rules`.
    ///
    /// ```
    /// use cms_core::SecurityRule;
    /// assert!(SecurityRule::tcp_in(22, 22, "0.0.0.0/0").check().is_ok());
    /// assert!(SecurityRule::tcp_in(23, 22, "0.0.0.0/0").check().is_err());
    /// assert!(SecurityRule::tcp_in(22, 22, "10.0.0.1/8").check().is_err());
    /// ```
    pub fn check(&self) -> crate::Result<()> {
        let bad = |why: String| crate::Error::invalid_argument("rules", why);
        match self.protocol {
            RuleProtocol::Tcp | RuleProtocol::Udp => match (self.from_port, self.to_port) {
                (Some(a), Some(b)) if a <= b => {}
                (Some(a), Some(b)) => {
                    return Err(bad(format!(
                        "the port range {a}-{b} of a {} rule ends before it starts",
                        self.protocol
                    )))
                }
                _ => {
                    return Err(bad(format!(
                        "a {} rule needs `from_port` and `to_port`",
                        self.protocol
                    )))
                }
            },
            RuleProtocol::Icmp => {
                for (name, v) in [("type", self.from_port), ("code", self.to_port)] {
                    if v.is_some_and(|v| v > 255) {
                        return Err(bad(format!(
                            "an ICMP {name} is 0 to 255, not {}",
                            v.unwrap_or_default()
                        )));
                    }
                }
            }
            RuleProtocol::All => {
                if self.from_port.is_some() || self.to_port.is_some() {
                    return Err(bad(
                        "a rule for every protocol takes no ports; leave `from_port` and \
                         `to_port` out"
                            .into(),
                    ));
                }
            }
        }
        match &self.peer {
            RulePeer::Cidr(c) => check_rule_cidr(c).map_err(bad)?,
            RulePeer::Group(g) => check_id("rules", g.as_str())?,
        }
        Ok(())
    }
}

/// Why an IPv4 range is not the canonical `a.b.c.d/n` a rule takes (`n` 0 to 32, no
/// host bits set).
fn check_rule_cidr(text: &str) -> Result<(), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not an IPv4 range `a.b.c.d/n`"))?;
    let ip: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{addr}` in `{text}` is not an IPv4 address"))?;
    let n: u8 = Some(prefix)
        .filter(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse().ok())
        .filter(|n| *n <= 32)
        .ok_or_else(|| format!("the prefix length in `{text}` must be 0 to 32"))?;
    let mask = if n == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(n))
    };
    let canonical = std::net::Ipv4Addr::from(u32::from(ip) & mask);
    if canonical != ip || format!("{ip}/{n}") != text {
        return Err(format!(
            "`{text}` is not in canonical form; write `{canonical}/{n}`"
        ));
    }
    Ok(())
}

/// A security group: a set of firewall rules instances are put in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityGroup {
    /// The backend's id.
    pub id: SecurityGroupId,
    /// Its name, unique among the groups of its network (or of the account).
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// The network it belongs to, where the backend scopes groups. On EC2 a group
    /// belongs to a VPC, which any of its subnets (cms networks) may use: the group
    /// shows the subnet it was made for, or the VPC's first subnet for groups made
    /// outside cms.
    #[serde(default)]
    pub network_id: Option<NetworkId>,
    /// Its rules, each once, in a stable order.
    #[serde(default)]
    pub rules: Vec<SecurityRule>,
    /// Whether it is the backend's default group (the one instances get when they name
    /// none; it cannot be deleted).
    #[serde(default)]
    pub is_default: bool,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Who it was made for ([`SecurityGroupSpec::owner`]).
    #[serde(default)]
    pub owner: Option<String>,
}

/// Which security groups to list. The default matches every group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityGroupFilter {
    /// Only these ids.
    pub ids: Vec<SecurityGroupId>,
    /// Only groups made for exactly this owner ([`SecurityGroupSpec::owner`]), and the
    /// default groups too when `include_default`. Every group when absent.
    pub owner: Option<String>,
    /// With `owner`: each network's default group as well (what every owner's
    /// instances may be put in).
    pub include_default: bool,
    /// Only the groups that show this network ([`SecurityGroup::network_id`]).
    pub network_id: Option<NetworkId>,
    /// Only groups carrying each of these tags; a `None` value matches any value.
    pub tags: BTreeMap<String, Option<String>>,
}

impl SecurityGroupFilter {
    /// Everything `owner` made.
    pub fn owned_by(owner: impl Into<String>) -> Self {
        SecurityGroupFilter {
            owner: Some(owner.into()),
            ..Default::default()
        }
    }

    /// The groups `owner` may use: its own and the default ones.
    pub fn usable_by(owner: impl Into<String>) -> Self {
        SecurityGroupFilter {
            owner: Some(owner.into()),
            include_default: true,
            ..Default::default()
        }
    }

    /// Whether a group passes the filter (for drivers that filter on the client side).
    pub fn matches(&self, g: &SecurityGroup) -> bool {
        (self.ids.is_empty() || self.ids.contains(&g.id))
            && match &self.owner {
                None => true,
                Some(o) => g.owner.as_ref() == Some(o) || (self.include_default && g.is_default),
            }
            && self
                .network_id
                .as_ref()
                .is_none_or(|n| g.network_id.as_ref() == Some(n))
            && self.tags.iter().all(|(k, v)| match (g.tags.get(k), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            })
    }
}

/// What to create: the arguments of
/// [`Driver::create_security_group`](crate::Driver::create_security_group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityGroupSpec {
    /// Its name (required).
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// The network to make it in, where the backend scopes groups; the default one
    /// when absent.
    #[serde(default)]
    pub network_id: Option<NetworkId>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Who the group is for, kept by the backend with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl SecurityGroupSpec {
    /// A group named `name` described by `description`.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        SecurityGroupSpec {
            name: name.into(),
            description: description.into(),
            ..Default::default()
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }
}

/// Checks a security group spec: a name (required) and description by
/// [`check_name`], the owner, tags. Errors are `InvalidArgument` for
/// [`Operation::CreateSecurityGroup`](crate::Operation::CreateSecurityGroup).
pub fn check_security_group_spec(spec: &SecurityGroupSpec) -> crate::Result<()> {
    let check = || -> crate::Result<()> {
        check_name("name", &spec.name, true)?;
        check_name("description", &spec.description, false)?;
        if let Some(n) = &spec.network_id {
            check_id("network_id", n.as_str())?;
        }
        if let Some(o) = &spec.owner {
            check_owner(o)?;
        }
        check_tags(&spec.tags)
    };
    check().map_err(|e| e.with_operation(crate::Operation::CreateSecurityGroup))
}

/// The most rules one call adds or removes.
pub const MAX_RULES_PER_CALL: usize = 100;

/// Checks rules given to [`Driver::add_security_rules`](crate::Driver::add_security_rules)
/// or `remove_security_rules`: 1 to [`MAX_RULES_PER_CALL`] of them, each by
/// [`SecurityRule::check`].
pub fn check_security_rules(rules: &[SecurityRule], op: crate::Operation) -> crate::Result<()> {
    if rules.is_empty() || rules.len() > MAX_RULES_PER_CALL {
        return Err(crate::Error::invalid_argument(
            "rules",
            format!(
                "{} rules given; give 1 to {MAX_RULES_PER_CALL}",
                rules.len()
            ),
        )
        .with_operation(op));
    }
    rules
        .iter()
        .try_for_each(SecurityRule::check)
        .map_err(|e| e.with_operation(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_and_write_as_documented() {
        let r = SecurityRule::tcp_in(22, 22, "0.0.0.0/0");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"direction": "ingress", "protocol": "tcp", "from_port": 22,
                "to_port": 22, "peer": {"cidr": "0.0.0.0/0"}})
        );
        let g: SecurityRule = serde_json::from_str(
            r#"{"direction":"egress","protocol":"all","peer":{"group":"sg-1"}}"#,
        )
        .unwrap();
        assert_eq!(
            g,
            SecurityRule::all(RuleDirection::Egress, RulePeer::Group("sg-1".into()))
        );
        assert!(g.check().is_ok());
        // JSON numbers: 22.0 is 22; 22.5, -1 and 70000 are no ports.
        let read = |ports: &str| {
            serde_json::from_str::<SecurityRule>(&format!(
                r#"{{"direction":"ingress","protocol":"tcp",{ports},"peer":{{"cidr":"0.0.0.0/0"}}}}"#
            ))
        };
        assert_eq!(
            read(r#""from_port":22.0,"to_port":22"#).unwrap(),
            SecurityRule::tcp_in(22, 22, "0.0.0.0/0")
        );
        for bad in [
            r#""from_port":22.5"#,
            r#""from_port":-1"#,
            r#""to_port":70000"#,
        ] {
            let e = read(bad).unwrap_err().to_string();
            assert!(e.contains("whole number from 0 to 65535"), "{bad}: {e}");
        }
    }

    #[test]
    fn rules_are_checked() {
        let bad = [
            SecurityRule::tcp_in(10, 9, "0.0.0.0/0"),
            SecurityRule {
                to_port: None,
                ..SecurityRule::tcp_in(1, 2, "0.0.0.0/0")
            },
            SecurityRule::tcp_in(1, 2, "10.0.0.0/33"),
            SecurityRule::tcp_in(1, 2, "10.0.0.0"),
            SecurityRule::tcp_in(1, 2, "10.0.0.0/08"),
            SecurityRule::tcp_in(1, 2, "10.0.0.1/24"),
            SecurityRule {
                protocol: RuleProtocol::All,
                ..SecurityRule::tcp_in(1, 2, "0.0.0.0/0")
            },
            SecurityRule {
                protocol: RuleProtocol::Icmp,
                ..SecurityRule::tcp_in(256, 0, "0.0.0.0/0")
            },
        ];
        for r in bad {
            let e = r.check().unwrap_err();
            assert_eq!(e.context_value("argument"), Some("rules"), "{r:?}");
        }
        let icmp = SecurityRule {
            protocol: RuleProtocol::Icmp,
            from_port: Some(8),
            to_port: None,
            ..SecurityRule::tcp_in(0, 0, "192.0.2.7/32")
        };
        assert!(icmp.check().is_ok());
        let e = check_security_rules(&[], crate::Operation::AddSecurityRules).unwrap_err();
        assert_eq!(e.operation(), Some(crate::Operation::AddSecurityRules));
        assert!(check_security_group_spec(&SecurityGroupSpec::new("web", "")).is_ok());
        assert!(check_security_group_spec(&SecurityGroupSpec::new(" ", "")).is_err());
    }
}
