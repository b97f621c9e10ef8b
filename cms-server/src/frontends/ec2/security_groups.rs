//! Security groups: CreateSecurityGroup, DescribeSecurityGroups, DeleteSecurityGroup,
//! Authorize/RevokeSecurityGroupIngress and Authorize/RevokeSecurityGroupEgress.
//!
//! Groups are EC2's VPC security groups: each belongs to a VPC (a cms network), and
//! each VPC has a `default` group, the driver's, which every tenant's instances may be
//! put in and which only an admin may change (a member is refused with
//! `UnauthorizedOperation`); nobody deletes it (`CannotDelete`). A tenant's own groups
//! are its alone. Rules are IPv4 ranges or other groups, for `tcp`, `udp`, `icmp` or
//! every protocol (`-1`; protocol numbers 6, 17 and 1 are read as their names).
//!
//! As on AWS, authorizing a rule the group holds already is
//! `InvalidPermission.Duplicate` and changes nothing (the model itself takes it as
//! no change: the frontend checks first, so AWS clients that rely on the error, such
//! as scripts that tolerate it, see it), and revoking rules none of which the group
//! holds is `InvalidPermission.NotFound`; revoking some that it holds and some it does
//! not revokes those it holds and lists the others in `unknownIpPermissionSet`.
//! Rules have ids (`sgr-` and 17 hex digits) derived from the group and the rule, so
//! the same rule always has the same id; RevokeSecurityGroup* takes them.

use std::collections::HashMap;
use std::sync::Arc;

use cms_core::{
    ErrorKind, NetworkId, RuleDirection, RulePeer, RuleProtocol, SecurityGroup,
    SecurityGroupFilter, SecurityGroupId, SecurityGroupSpec, SecurityRule,
};
use sha2::{Digest, Sha256};

use super::actions::{
    account_id, caps, catalogue_owner, max_results, missing_ids, require, resolve_catalogue,
    tag_specifications, unsupported,
};
use super::error::{mapped, Ec2Error, Result};
use super::families::{default_network, finish, listing, public_ids, resolve_owned, vpc_ids};
use super::params::{filters, unknown_filter, View};
use super::xml::Xml;
use super::{Action, Call};
use crate::service::{Kind, ObjectRef, Shown};

/// Groups by backend id: their public ids and names.
pub(super) type GroupNames = HashMap<String, (Arc<str>, Arc<str>)>;

pub(super) const GROUP_CODES: (&str, &str, &str) = (
    "InvalidGroupId.Malformed",
    "InvalidGroup.NotFound",
    "security group",
);

const VPC_CODES: (&str, &str, &str) = ("InvalidVpcID.Malformed", "InvalidVpcID.NotFound", "vpc ID");

/// EC2's `ipProtocol` of a cms protocol.
fn ec2_protocol(p: RuleProtocol) -> &'static str {
    match p {
        RuleProtocol::Tcp => "tcp",
        RuleProtocol::Udp => "udp",
        RuleProtocol::Icmp => "icmp",
        RuleProtocol::All => "-1",
    }
}

/// The cms protocol of an `IpProtocol` (names or numbers, as EC2 takes them).
fn parse_protocol(v: &str, name: &str) -> Result<RuleProtocol> {
    match v.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Ok(RuleProtocol::Tcp),
        "udp" | "17" => Ok(RuleProtocol::Udp),
        "icmp" | "1" => Ok(RuleProtocol::Icmp),
        "-1" | "all" => Ok(RuleProtocol::All),
        _ => Err(Ec2Error::invalid_value(format!(
            "Value ({v}) for parameter {name} is invalid: cms rules take tcp, udp, icmp or -1 (every protocol), or the numbers 6, 17 and 1"
        ))),
    }
}

/// The ports of a rule of `proto` from `FromPort`/`ToPort`: a range for tcp and udp
/// (both required), the ICMP type and code for icmp (-1 or absent: all), none for
/// every protocol (EC2 ignores them there).
fn ports(
    proto: RuleProtocol,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(Option<u16>, Option<u16>)> {
    let bad = |why: &str| {
        Err(Ec2Error::invalid_value(format!(
            "Invalid value '{why}' for portRange"
        )))
    };
    match proto {
        RuleProtocol::Tcp | RuleProtocol::Udp => match (from, to) {
            (Some(a), Some(b)) if a >= 0 && b >= 0 && a <= b => {
                Ok((Some(a as u16), Some(b as u16)))
            }
            (Some(a), Some(b)) if a >= 0 && b >= 0 => {
                bad(&format!("Invalid TCP/UDP port range {a}-{b}"))
            }
            (Some(_), Some(_)) => bad("TCP/UDP ports are 0 to 65535"),
            _ => bad("Must specify both from and to ports with TCP/UDP."),
        },
        RuleProtocol::Icmp => {
            let one = |v: Option<i64>, what: &str| match v {
                None | Some(-1) => Ok(None),
                Some(n @ 0..=255) => Ok(Some(n as u16)),
                Some(n) => Err(Ec2Error::invalid_value(format!(
                    "Invalid value '{n}' for {what}: an ICMP {what} is 0 to 255, or -1 for all"
                ))),
            };
            Ok((one(from, "type")?, one(to, "code")?))
        }
        RuleProtocol::All => Ok((None, None)),
    }
}

/// The `fromPort`/`toPort` EC2 shows for a rule (none for every protocol; -1 for all
/// ICMP types or codes).
fn shown_ports(r: &SecurityRule) -> Option<(i32, i32)> {
    let p = |v: Option<u16>| v.map_or(-1, i32::from);
    match r.protocol {
        RuleProtocol::All => None,
        _ => Some((p(r.from_port), p(r.to_port))),
    }
}

/// A rule's id: `sgr-` and 17 hex digits of a digest of the group and the rule.
fn rule_id(group: &str, r: &SecurityRule, peer: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{group}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{peer}",
        r.direction.as_str(),
        r.protocol.as_str(),
        r.from_port,
        r.to_port
    ));
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sgr-{}", &hex[..17])
}

/// What a group's answer names: the public ids and owners of groups, VPC ids.
struct GroupIds {
    /// Backend id -> (public id, owner account).
    groups: HashMap<String, (Arc<str>, String)>,
    vpcs: HashMap<String, Arc<str>>,
    /// The caller's account, for peers it cannot see.
    me: String,
}

impl GroupIds {
    async fn of(c: &Call<'_>, listed: &[Shown<SecurityGroup>]) -> Result<GroupIds> {
        let mut groups: HashMap<String, (Arc<str>, String)> = listed
            .iter()
            .map(|g| {
                (
                    g.item.id.to_string(),
                    (g.entry().public_id.clone(), group_owner(c, &g.item)),
                )
            })
            .collect();
        let peers: Vec<&str> = listed
            .iter()
            .flat_map(|g| g.item.rules.iter())
            .filter_map(|r| match &r.peer {
                RulePeer::Group(id) if !groups.contains_key(id.as_str()) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let me = account_id(&c.tenant.name);
        for (b, p) in public_ids(c, Kind::SecurityGroup, peers).await? {
            groups.insert(b, (p, me.clone()));
        }
        let networks: Vec<&str> = listed
            .iter()
            .filter_map(|g| g.item.network_id.as_ref().map(|n| n.as_str()))
            .collect();
        let vpcs = vpc_ids(c, networks).await?;
        Ok(GroupIds { groups, vpcs, me })
    }

    /// The public id and owner of a peer group.
    fn peer(&self, id: &SecurityGroupId) -> (&str, &str) {
        match self.groups.get(id.as_str()) {
            Some((p, o)) => (p, o),
            None => ("", &self.me),
        }
    }

    fn vpc(&self, g: &SecurityGroup) -> Option<&str> {
        g.network_id
            .as_ref()
            .and_then(|n| self.vpcs.get(n.as_str()))
            .map(|v| &**v)
    }

    /// How a rule's peer is named in its id: the CIDR range, or the group's public id.
    fn peer_text<'a>(&'a self, r: &'a SecurityRule) -> &'a str {
        match &r.peer {
            RulePeer::Cidr(c) => c,
            RulePeer::Group(g) => self.peer(g).0,
        }
    }
}

/// The account that owns a group: its tenant's, or the provider's for the shared
/// default groups (the VPC's owner, as DescribeVpcs shows it).
fn group_owner(c: &Call<'_>, g: &SecurityGroup) -> String {
    match &g.owner {
        Some(o) => account_id(o),
        None => catalogue_owner(c),
    }
}

/// Writes `ipPermissions` or `ipPermissionsEgress`: the rules of one direction, those
/// with the same protocol and ports as one permission, in the group's order.
fn write_permissions(x: &mut Xml, tag: &str, rules: &[&SecurityRule], ids: &GroupIds) {
    if rules.is_empty() {
        x.empty(tag);
        return;
    }
    let mut keys: Vec<(RuleProtocol, Option<u16>, Option<u16>)> = Vec::new();
    for r in rules {
        let k = (r.protocol, r.from_port, r.to_port);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    x.open(tag);
    for k in keys {
        let same: Vec<&&SecurityRule> = rules
            .iter()
            .filter(|r| (r.protocol, r.from_port, r.to_port) == k)
            .collect();
        x.open("item").leaf("ipProtocol", ec2_protocol(k.0));
        if let Some((from, to)) = shown_ports(same[0]) {
            x.num("fromPort", from).num("toPort", to);
        }
        let groups: Vec<&SecurityGroupId> = same
            .iter()
            .filter_map(|r| match &r.peer {
                RulePeer::Group(g) => Some(g),
                RulePeer::Cidr(_) => None,
            })
            .collect();
        if groups.is_empty() {
            x.empty("groups");
        } else {
            x.open("groups");
            for g in groups {
                let (id, owner) = ids.peer(g);
                x.open("item")
                    .leaf("userId", owner)
                    .leaf("groupId", id)
                    .close("item");
            }
            x.close("groups");
        }
        let ranges: Vec<&str> = same
            .iter()
            .filter_map(|r| match &r.peer {
                RulePeer::Cidr(c) => Some(c.as_str()),
                RulePeer::Group(_) => None,
            })
            .collect();
        if ranges.is_empty() {
            x.empty("ipRanges");
        } else {
            x.open("ipRanges");
            for c in ranges {
                x.open("item").leaf("cidrIp", c).close("item");
            }
            x.close("ipRanges");
        }
        x.raw("<ipv6Ranges/><prefixListIds/>").close("item");
    }
    x.close(tag);
}

/// One `securityGroupRuleSet` (or `revokedSecurityGroupRuleSet`) item.
fn write_rule(
    x: &mut Xml,
    group: &str,
    owner: Option<&str>,
    r: &SecurityRule,
    ids: &GroupIds,
    revoked: bool,
) {
    x.open("item")
        .leaf("securityGroupRuleId", &rule_id(group, r, ids.peer_text(r)))
        .leaf("groupId", group);
    x.leaf_opt("groupOwnerId", owner)
        .bool("isEgress", r.direction == RuleDirection::Egress)
        .leaf("ipProtocol", ec2_protocol(r.protocol));
    let (from, to) = shown_ports(r).unwrap_or((-1, -1));
    x.num("fromPort", from).num("toPort", to);
    match &r.peer {
        RulePeer::Cidr(c) => {
            x.leaf("cidrIpv4", c);
        }
        RulePeer::Group(g) => {
            let (id, owner) = ids.peer(g);
            if revoked {
                x.leaf("referencedGroupId", id);
            } else {
                x.open("referencedGroupInfo")
                    .leaf("groupId", id)
                    .leaf("userId", owner)
                    .close("referencedGroupInfo");
            }
        }
    }
    x.close("item");
}

/// Every group the tenant may use (its own and the default ones; every group for an
/// admin), each with its row.
async fn usable_groups(c: &Call<'_>) -> Result<Vec<Shown<SecurityGroup>>> {
    let filter = SecurityGroupFilter::default();
    let (items, _) = listing(c, None, true, |req| {
        let filter = &filter;
        async move {
            c.service
                .list_security_groups(c.tenant, c.provider, filter, &req, true)
                .await
        }
    })
    .await?;
    Ok(items)
}

/// The group named `name` among `groups`, in network `scope` when given (EC2 names
/// groups per VPC): `None` when there is none, `InvalidParameterValue` when the name
/// is ambiguous.
fn by_name<'a>(
    groups: &'a [Shown<SecurityGroup>],
    name: &str,
    scope: Option<&NetworkId>,
) -> Result<Option<&'a Shown<SecurityGroup>>> {
    let found: Vec<&Shown<SecurityGroup>> = groups
        .iter()
        .filter(|g| g.item.name == name)
        .filter(|g| scope.is_none_or(|n| g.item.network_id.as_ref().is_none_or(|m| m == n)))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(Ec2Error::invalid_value(format!(
            "More than one security group is named '{name}'; name it by GroupId"
        ))),
    }
}

fn no_group(name: &str) -> Ec2Error {
    Ec2Error::not_found(GROUP_CODES.1, "security group", name)
}

/// The backend ids of the groups a RunInstances names (`SecurityGroupId.N`, and
/// `SecurityGroup.N` by name among the groups the tenant may use in the instance's
/// network `network`, the default one when absent), and, when the launch names no
/// subnet, the network the groups share: as on EC2, an instance launched into groups
/// without a subnet goes into their VPC.
pub(super) async fn launch_groups(
    c: &Call<'_>,
    network: Option<&NetworkId>,
) -> Result<(Vec<SecurityGroupId>, Option<NetworkId>)> {
    let ids = c.p.list("SecurityGroupId")?;
    let names = c.p.list("SecurityGroup")?;
    if ids.is_empty() && names.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut out: Vec<SecurityGroupId> = Vec::new();
    if !ids.is_empty() {
        for b in resolve_owned(c, Kind::SecurityGroup, &ids, GROUP_CODES).await? {
            out.push(SecurityGroupId::new(&*b));
        }
    }
    let groups = usable_groups(c).await?;
    if !names.is_empty() {
        let default = match network {
            Some(_) => None,
            None => default_network(c).await?,
        };
        let scope = network.or(default.as_ref());
        for name in names {
            match by_name(&groups, name, scope)? {
                Some(g) => out.push(g.item.id.clone()),
                None => return Err(no_group(name)),
            }
        }
    }
    let mut seen = Vec::new();
    out.retain(|g| {
        let first = !seen.contains(g);
        seen.push(g.clone());
        first
    });
    let networks: Vec<Option<&NetworkId>> = out
        .iter()
        .map(|id| {
            groups
                .iter()
                .find(|g| g.item.id == *id)
                .and_then(|g| g.item.network_id.as_ref())
        })
        .collect();
    let shared = match networks.split_first() {
        Some((Some(first), rest)) if rest.iter().all(|n| *n == Some(*first)) => {
            Some((*first).clone())
        }
        _ => None,
    };
    Ok((out, if network.is_none() { shared } else { None }))
}

/// The public ids and names of groups instances are in, by backend id, in one
/// listing (groups the tenant cannot list are shown by id, without a name).
pub(super) async fn names_of(c: &Call<'_>, mut ids: Vec<&str>) -> Result<GroupNames> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let filter = SecurityGroupFilter {
        ids: ids.iter().map(|i| SecurityGroupId::new(*i)).collect(),
        ..SecurityGroupFilter::default()
    };
    let listed = listing(c, None, true, |req| {
        let filter = &filter;
        async move {
            c.service
                .list_security_groups(c.tenant, c.provider, filter, &req, true)
                .await
        }
    })
    .await;
    // A provider that cannot keep who owns a group lists groups to admins only: a
    // member's instances still show theirs, by id.
    let items = match listed {
        Ok((items, _)) => items,
        Err(e) if e.code == "UnsupportedOperation" => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut out: GroupNames = items
        .into_iter()
        .map(|g| {
            let public = g.entry().public_id.clone();
            (
                g.item.id.to_string(),
                (public, Arc::from(g.item.name.as_str())),
            )
        })
        .collect();
    let unseen: Vec<&str> = ids.into_iter().filter(|i| !out.contains_key(*i)).collect();
    for (b, p) in public_ids(c, Kind::SecurityGroup, unseen).await? {
        out.insert(b, (p, Arc::from("")));
    }
    Ok(out)
}

/// The public ids and names of every group the tenant may use, by backend id.
pub(super) async fn usable_group_names(c: &Call<'_>) -> Result<GroupNames> {
    Ok(usable_groups(c)
        .await?
        .into_iter()
        .map(|g| {
            let public = g.entry().public_id.clone();
            (
                g.item.id.to_string(),
                (public, Arc::from(g.item.name.as_str())),
            )
        })
        .collect())
}

/// The DescribeSecurityGroups filters served (and `tag:KEY`).
const GROUP_FILTERS: &[&str] = &[
    "description",
    "group-id",
    "group-name",
    "owner-id",
    "vpc-id",
    "tag-key",
    "ip-permission.cidr",
    "ip-permission.from-port",
    "ip-permission.to-port",
    "ip-permission.protocol",
    "ip-permission.group-id",
    "ip-permission.user-id",
    "egress.ip-permission.cidr",
    "egress.ip-permission.from-port",
    "egress.ip-permission.to-port",
    "egress.ip-permission.protocol",
    "egress.ip-permission.group-id",
    "egress.ip-permission.user-id",
];

/// DescribeSecurityGroups filters of the EC2 API on what cms rules do not have.
const GROUP_UNSERVED: &[&str] = &[
    "ip-permission.group-name",
    "ip-permission.ipv6-cidr",
    "ip-permission.prefix-list-id",
    "egress.ip-permission.ipv6-cidr",
    "egress.ip-permission.prefix-list-id",
];

/// The values a filter on a group's rules (`ip-permission.*`, `egress.…`) looks at.
fn rule_field(f: &str, g: &SecurityGroup, ids: &GroupIds) -> Option<Vec<String>> {
    let (direction, field) = match f.strip_prefix("egress.ip-permission.") {
        Some(field) => (RuleDirection::Egress, field),
        None => (RuleDirection::Ingress, f.strip_prefix("ip-permission.")?),
    };
    let rules = g.rules.iter().filter(|r| r.direction == direction);
    Some(match field {
        "cidr" => rules
            .filter_map(|r| match &r.peer {
                RulePeer::Cidr(c) => Some(c.clone()),
                RulePeer::Group(_) => None,
            })
            .collect(),
        "from-port" => rules
            .filter_map(|r| shown_ports(r).map(|(a, _)| a.to_string()))
            .collect(),
        "to-port" => rules
            .filter_map(|r| shown_ports(r).map(|(_, b)| b.to_string()))
            .collect(),
        "protocol" => rules.map(|r| ec2_protocol(r.protocol).to_owned()).collect(),
        "group-id" => rules
            .filter_map(|r| match &r.peer {
                RulePeer::Group(p) => Some(ids.peer(p).0.to_owned()),
                RulePeer::Cidr(_) => None,
            })
            .collect(),
        "user-id" => rules
            .filter_map(|r| match &r.peer {
                RulePeer::Group(p) => Some(ids.peer(p).1.to_owned()),
                RulePeer::Cidr(_) => None,
            })
            .collect(),
        _ => return None,
    })
}

pub(super) async fn describe_security_groups(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).security_groups.list, "listing security groups")?;
    let fs = filters(&c.p)?;
    for f in &fs {
        let name = f.name.as_str();
        if name.starts_with("tag:") || GROUP_FILTERS.contains(&name) {
            continue;
        }
        if GROUP_UNSERVED.contains(&name) {
            return Err(Ec2Error::invalid_value(format!(
                "The filter '{name}' is not supported here: cms rules have no such field"
            )));
        }
        return Err(unknown_filter(name));
    }
    let max = max_results(&c.p, 5..=1000)?;
    let ids = c.p.list("GroupId")?;
    let names = c.p.list("GroupName")?;
    let wanted = if ids.is_empty() {
        None
    } else {
        Some(resolve_owned(c, Kind::SecurityGroup, &ids, GROUP_CODES).await?)
    };
    // Groups are few: the whole listing is read, filtered and cut into pages here.
    let all = usable_groups(c).await?;
    let gids = GroupIds::of(c, &all).await?;
    if let Some(w) = &wanted {
        let missing: Vec<String> = ids
            .iter()
            .zip(w)
            .filter(|(_, b)| !all.iter().any(|g| g.item.id.as_str() == &***b))
            .map(|(id, _)| (*id).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(missing_ids(GROUP_CODES.1, GROUP_CODES.2, &missing));
        }
    }
    for n in &names {
        if !all.iter().any(|g| g.item.name == *n) {
            return Err(no_group(n));
        }
    }
    let rows: Vec<Shown<SecurityGroup>> = all
        .into_iter()
        .filter(|g| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|b| **b == *g.item.id.as_str()))
                && (names.is_empty() || names.contains(&g.item.name.as_str()))
        })
        .filter(|sg| {
            let g = &sg.item;
            fs.iter().all(|f| match f.name.as_str() {
                "description" => f.matches([g.description.as_str()]),
                "group-id" => f.matches([&*sg.entry().public_id]),
                "group-name" => f.matches([g.name.as_str()]),
                "owner-id" => f.matches([group_owner(c, g).as_str()]),
                "vpc-id" => f.matches(gids.vpc(g)),
                name => match rule_field(name, g, &gids) {
                    Some(values) => f.matches(values.iter().map(String::as_str)),
                    None => f.on_tags(&g.tags).unwrap_or(false),
                },
            })
        })
        .collect();
    let (page, next) = finish(c, rows, true, None, max)?;
    let mut x = Xml::response(
        "DescribeSecurityGroups",
        c.request_id,
        256 + page.len() * 900,
    );
    x.open("securityGroupInfo");
    for sg in &page {
        let g = &sg.item;
        x.open("item")
            .leaf("ownerId", &group_owner(c, g))
            .leaf("groupId", &sg.entry().public_id)
            .leaf("groupName", &g.name)
            .leaf("groupDescription", &g.description);
        let of = |d: RuleDirection| -> Vec<&SecurityRule> {
            g.rules.iter().filter(|r| r.direction == d).collect()
        };
        write_permissions(&mut x, "ipPermissions", &of(RuleDirection::Ingress), &gids);
        write_permissions(
            &mut x,
            "ipPermissionsEgress",
            &of(RuleDirection::Egress),
            &gids,
        );
        x.leaf_opt("vpcId", gids.vpc(g));
        x.tags(
            "tagSet",
            g.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        x.close("item");
    }
    x.close("securityGroupInfo");
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeSecurityGroups"))
}

pub(super) async fn create_security_group(c: &Call<'_>) -> Result<String> {
    let gc = caps(c).security_groups;
    require(c, gc.create, "creating security groups")?;
    let name = c.p.required("GroupName")?;
    let description = c.p.required("GroupDescription")?;
    if name.eq_ignore_ascii_case("default") {
        return Err(Ec2Error::invalid_value(
            "Cannot use reserved security group name: default",
        ));
    }
    if name.starts_with("sg-") {
        return Err(Ec2Error::invalid_value(
            "Group names may not be in the format sg-*",
        ));
    }
    let network_id = match c.p.get("VpcId").filter(|v| !v.is_empty()) {
        Some(v) => Some(NetworkId::new(
            &*resolve_catalogue(c, Kind::Vpc, &[v], VPC_CODES)
                .await?
                .remove(0),
        )),
        None => None,
    };
    let tags = tag_specifications(&c.p, "security-group")?;
    if !tags.is_empty() {
        require(c, gc.tags, "tags on security groups")?;
    }
    let vpc = c.p.get("VpcId").filter(|v| !v.is_empty());
    let spec = SecurityGroupSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        network_id,
        tags,
        owner: None,
    };
    let made = c
        .service
        .create_security_group(c.tenant, c.provider, &spec)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => Ec2Error::new(
                "InvalidGroup.Duplicate",
                400,
                match vpc {
                    Some(v) => format!("The security group '{name}' already exists for VPC '{v}'"),
                    None => format!("The security group '{name}' already exists"),
                },
            ),
            ErrorKind::NotFound if vpc.is_some() => {
                Ec2Error::not_found(VPC_CODES.1, VPC_CODES.2, vpc.unwrap_or_default())
            }
            _ => mapped(
                e,
                &[(ErrorKind::QuotaExceeded, "SecurityGroupLimitExceeded")],
            ),
        })?;
    let mut x = Xml::response("CreateSecurityGroup", c.request_id, 512);
    x.leaf("groupId", &made.entry().public_id);
    x.tags(
        "tagSet",
        made.item.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    Ok(x.finish("CreateSecurityGroup"))
}

/// The group an action names by `GroupId`, or by `GroupName` (in the default VPC, as
/// EC2 takes names), among `groups`: its public id and the group.
async fn target<'a>(
    c: &Call<'_>,
    groups: &'a [Shown<SecurityGroup>],
    by_name_too: bool,
) -> Result<&'a Shown<SecurityGroup>> {
    let id = c.p.get("GroupId").filter(|g| !g.is_empty());
    let name = if by_name_too {
        c.p.get("GroupName").filter(|g| !g.is_empty())
    } else {
        None
    };
    match (id, name) {
        (Some(_), Some(_)) => Err(Ec2Error::combination(
            "Name the group by GroupId or by GroupName, not both",
        )),
        (Some(id), None) => {
            let b = resolve_owned(c, Kind::SecurityGroup, &[id], GROUP_CODES)
                .await?
                .remove(0);
            groups
                .iter()
                .find(|g| g.item.id.as_str() == &*b)
                .ok_or_else(|| no_group(id))
        }
        (None, Some(name)) => {
            let default = default_network(c).await?;
            match by_name(groups, name, default.as_ref())? {
                Some(g) => Ok(g),
                None => match by_name(groups, name, None)? {
                    Some(g) => Ok(g),
                    None => Err(no_group(name)),
                },
            }
        }
        (None, None) if by_name_too => Err(Ec2Error::new(
            "MissingParameter",
            400,
            "The request must contain the parameter GroupName or GroupId",
        )),
        (None, None) => Err(Ec2Error::missing("GroupId")),
    }
}

pub(super) async fn delete_security_group(c: &Call<'_>) -> Result<String> {
    require(
        c,
        caps(c).security_groups.delete,
        "deleting security groups",
    )?;
    let groups = usable_groups(c).await?;
    let g = target(c, &groups, true).await?;
    let id = g.entry().public_id.clone();
    if g.item.is_default {
        return Err(Ec2Error::new(
            "CannotDelete",
            400,
            format!("the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"),
        ));
    }
    c.service
        .delete_security_group(c.tenant, c.provider, ObjectRef::Public(&id))
        .await
        .map_err(|e| {
            mapped(
                e,
                &[
                    (ErrorKind::InvalidState, "DependencyViolation"),
                    (ErrorKind::PermissionDenied, "UnauthorizedOperation"),
                ],
            )
        })
        .map_err(|mut e| {
            if e.code == "DependencyViolation" {
                e.message = format!("resource {id} has a dependent object ({})", e.message);
            }
            e
        })?;
    let mut x = Xml::response("DeleteSecurityGroup", c.request_id, 256);
    x.bool("return", true).leaf("groupId", &id);
    Ok(x.finish("DeleteSecurityGroup"))
}

/// A rule's peer as a request names it, before group names are resolved.
#[derive(Debug)]
enum AskedPeer {
    Cidr(String),
    GroupId(String),
    GroupName(String),
}

/// A rule as a request asks for it: protocol, ports and peer.
type AskedRule = (RuleProtocol, Option<u16>, Option<u16>, AskedPeer);

/// Refuses a description on a rule's peer: cms rules keep none.
fn no_description(v: &View<'_>) -> Result<()> {
    match v.get("Description").filter(|d| !d.is_empty()) {
        Some(_) => Err(Ec2Error::unsupported(format!(
            "{}: cms security rules keep no descriptions; leave it out",
            v.full_name("Description")
        ))),
        None => Ok(()),
    }
}

/// The rules a request asks for, in `IpPermissions.N` or the legacy top-level form,
/// with their peers as named.
fn asked(p: &View<'_>) -> Result<Vec<AskedRule>> {
    let mut out = Vec::new();
    let perms = p.structs("IpPermissions")?;
    let legacy = [
        "CidrIp",
        "IpProtocol",
        "FromPort",
        "ToPort",
        "SourceSecurityGroupName",
    ]
    .iter()
    .any(|n| p.get(n).is_some());
    if legacy && !perms.is_empty() {
        return Err(Ec2Error::combination(
            "Give the rules as IpPermissions or as CidrIp/IpProtocol/FromPort/ToPort/SourceSecurityGroupName, not both",
        ));
    }
    for perm in &perms {
        let proto = parse_protocol(perm.required("IpProtocol")?, &perm.full_name("IpProtocol"))?;
        let (from, to) = ports(
            proto,
            perm.int("FromPort", -1..=65535)?,
            perm.int("ToPort", -1..=65535)?,
        )?;
        let before = out.len();
        for range in perm.structs("IpRanges")? {
            no_description(&range)?;
            let cidr = range.required("CidrIp")?;
            out.push((proto, from, to, AskedPeer::Cidr(cidr.to_owned())));
        }
        for pair in perm.structs("Groups")? {
            no_description(&pair)?;
            // `UserId` names the account that owns the group; the group says it.
            let peer = match (
                pair.get("GroupId").filter(|g| !g.is_empty()),
                pair.get("GroupName").filter(|g| !g.is_empty()),
            ) {
                (Some(id), _) => AskedPeer::GroupId(id.to_owned()),
                (None, Some(name)) => AskedPeer::GroupName(name.to_owned()),
                (None, None) => return Err(Ec2Error::missing(&pair.full_name("GroupId"))),
            };
            out.push((proto, from, to, peer));
        }
        if out.len() == before {
            return Err(Ec2Error::invalid_value(format!(
                "{} names no IpRanges and no Groups: a rule needs a source or destination",
                perm.full_name("").trim_end_matches('.')
            )));
        }
    }
    if legacy {
        let cidr = p.get("CidrIp").filter(|v| !v.is_empty());
        let source = p.get("SourceSecurityGroupName").filter(|v| !v.is_empty());
        let proto = match p.get("IpProtocol").filter(|v| !v.is_empty()) {
            Some(v) => parse_protocol(v, "IpProtocol")?,
            // A group named alone lets every protocol in, as EC2 reads it.
            None if cidr.is_none() && source.is_some() => RuleProtocol::All,
            None => return Err(Ec2Error::missing("IpProtocol")),
        };
        let (from, to) = ports(
            proto,
            p.int("FromPort", -1..=65535)?,
            p.int("ToPort", -1..=65535)?,
        )?;
        match (cidr, source) {
            (Some(_), Some(_)) => {
                return Err(Ec2Error::combination(
                    "Give CidrIp or SourceSecurityGroupName, not both",
                ))
            }
            (Some(c), None) => out.push((proto, from, to, AskedPeer::Cidr(c.to_owned()))),
            (None, Some(g)) => out.push((proto, from, to, AskedPeer::GroupName(g.to_owned()))),
            (None, None) => return Err(Ec2Error::missing("CidrIp")),
        }
    }
    Ok(out)
}

/// A rule as a message names it (AWS's words).
fn rule_text(r: &SecurityRule, ids: &GroupIds) -> String {
    let ports = match shown_ports(r) {
        Some((a, b)) => format!(", from port: {a}, to port: {b}"),
        None => String::new(),
    };
    format!(
        "peer: {}, {}{ports}, ALLOW",
        ids.peer_text(r),
        ec2_protocol(r.protocol).to_ascii_uppercase()
    )
}

pub(super) async fn change_rules(c: &Call<'_>, action: Action) -> Result<String> {
    let gc = caps(c).security_groups;
    let (add, direction) = match action {
        Action::AuthorizeSecurityGroupIngress => (true, RuleDirection::Ingress),
        Action::AuthorizeSecurityGroupEgress => (true, RuleDirection::Egress),
        Action::RevokeSecurityGroupIngress => (false, RuleDirection::Ingress),
        _ => (false, RuleDirection::Egress),
    };
    require(
        c,
        gc.update_rules && gc.list,
        "changing security group rules",
    )?;
    if direction == RuleDirection::Egress && !gc.egress {
        return Err(unsupported(c, "egress rules"));
    }
    let by_rule_id = c.p.list("SecurityGroupRuleId")?;
    let asked = if by_rule_id.is_empty() {
        asked(&c.p)?
    } else {
        if !c.p.structs("IpPermissions")?.is_empty()
            || c.p.get("IpProtocol").is_some()
            || c.p.get("CidrIp").is_some()
        {
            return Err(Ec2Error::combination(
                "Give SecurityGroupRuleId or the rules, not both",
            ));
        }
        Vec::new()
    };
    if add {
        // Rules are tagged with the group's tags in cms: a rule has none of its own.
        if !tag_specifications(&c.p, "security-group-rule")?.is_empty() {
            return Err(Ec2Error::unsupported(
                "cms security rules carry no tags; leave TagSpecification out",
            ));
        }
    }
    let groups = usable_groups(c).await?;
    let target = target(c, &groups, direction == RuleDirection::Ingress).await?;
    let group_id = target.entry().public_id.clone();
    if target.item.is_default && !c.tenant.is_admin() {
        return Err(Ec2Error::new(
            "UnauthorizedOperation",
            403,
            format!(
                "You are not authorized to change the rules of {group_id}: it is its VPC's default group, shared by every tenant of provider `{}`; put instances in a group of your own",
                c.provider.name
            ),
        ));
    }
    let mut ids = GroupIds::of(c, &groups).await?;
    // The peers, by backend id.
    let mut rules: Vec<SecurityRule> = Vec::new();
    for (protocol, from_port, to_port, peer) in asked {
        let peer = match peer {
            AskedPeer::Cidr(c) => RulePeer::Cidr(c),
            AskedPeer::GroupId(id) => {
                let b = resolve_owned(c, Kind::SecurityGroup, &[&id], GROUP_CODES)
                    .await?
                    .remove(0);
                if !ids.groups.contains_key(&*b) {
                    ids.groups
                        .insert(b.to_string(), (Arc::from(id.as_str()), ids.me.clone()));
                }
                RulePeer::Group(SecurityGroupId::new(&*b))
            }
            AskedPeer::GroupName(name) => {
                match by_name(&groups, &name, target.item.network_id.as_ref())? {
                    Some(g) => RulePeer::Group(g.item.id.clone()),
                    None => return Err(no_group(&name)),
                }
            }
        };
        if matches!(peer, RulePeer::Group(_)) && !gc.group_peers {
            return Err(unsupported(c, "rules whose peer is a security group"));
        }
        let rule = SecurityRule {
            direction,
            protocol,
            from_port,
            to_port,
            peer,
        };
        rule.check().map_err(Ec2Error::from)?;
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    let held = |r: &SecurityRule| target.item.rules.contains(r);
    let name = action.as_str();
    let owner = group_owner(c, &target.item);
    if add {
        if let Some(dup) = rules.iter().find(|r| held(r)) {
            return Err(Ec2Error::new(
                "InvalidPermission.Duplicate",
                400,
                format!(
                    "the specified rule \"{}\" already exists",
                    rule_text(dup, &ids)
                ),
            ));
        }
        c.service
            .change_security_rules(
                c.tenant,
                c.provider,
                ObjectRef::Public(&group_id),
                &rules,
                true,
            )
            .await
            .map_err(|e| {
                mapped(
                    e,
                    &[
                        (
                            ErrorKind::QuotaExceeded,
                            "RulesPerSecurityGroupLimitExceeded",
                        ),
                        (ErrorKind::PermissionDenied, "UnauthorizedOperation"),
                    ],
                )
            })?;
        let mut x = Xml::response(name, c.request_id, 512 + rules.len() * 400);
        x.bool("return", true).open("securityGroupRuleSet");
        for r in &rules {
            write_rule(&mut x, &group_id, Some(&owner), r, &ids, false);
        }
        x.close("securityGroupRuleSet");
        return Ok(x.finish(name));
    }
    // Revoke: by rule id, or the rules asked.
    if !by_rule_id.is_empty() {
        for rid in &by_rule_id {
            let found = target.item.rules.iter().find(|r| {
                r.direction == direction && rule_id(&group_id, r, ids.peer_text(r)) == *rid
            });
            match found {
                Some(r) => rules.push(r.clone()),
                None => {
                    return Err(Ec2Error::new(
                        "InvalidSecurityGroupRuleId.NotFound",
                        400,
                        format!("The security group rule ID '{rid}' does not exist"),
                    ))
                }
            }
        }
    }
    let (known, unknown): (Vec<SecurityRule>, Vec<SecurityRule>) =
        rules.into_iter().partition(|r| held(r));
    if known.is_empty() {
        return Err(Ec2Error::new(
            "InvalidPermission.NotFound",
            400,
            "The specified rule does not exist in this security group.",
        ));
    }
    c.service
        .change_security_rules(
            c.tenant,
            c.provider,
            ObjectRef::Public(&group_id),
            &known,
            false,
        )
        .await
        .map_err(|e| mapped(e, &[(ErrorKind::PermissionDenied, "UnauthorizedOperation")]))?;
    let mut x = Xml::response(name, c.request_id, 512 + known.len() * 400);
    x.bool("return", true);
    if !unknown.is_empty() {
        let refs: Vec<&SecurityRule> = unknown.iter().collect();
        write_permissions(&mut x, "unknownIpPermissionSet", &refs, &ids);
    }
    x.open("revokedSecurityGroupRuleSet");
    for r in &known {
        write_rule(&mut x, &group_id, None, r, &ids, true);
    }
    x.close("revokedSecurityGroupRuleSet");
    Ok(x.finish(name))
}

/// The rules of a request, parsed without a service (for the fuzz entry point).
pub(crate) fn parse_rules(p: &View<'_>) -> Result<usize> {
    Ok(asked(p)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontends::ec2::params::Params;

    fn params(form: &str) -> Params {
        let mut p = Params::default();
        p.add_form(form).unwrap();
        p
    }

    #[test]
    fn protocols_and_ports_read_as_ec2_writes_them() {
        assert_eq!(parse_protocol("TCP", "x").unwrap(), RuleProtocol::Tcp);
        assert_eq!(parse_protocol("17", "x").unwrap(), RuleProtocol::Udp);
        assert_eq!(parse_protocol("-1", "x").unwrap(), RuleProtocol::All);
        assert!(parse_protocol("47", "x").is_err());
        assert_eq!(
            ports(RuleProtocol::Tcp, Some(22), Some(22)).unwrap(),
            (Some(22), Some(22))
        );
        let e = ports(RuleProtocol::Tcp, None, None).unwrap_err();
        assert!(
            e.message.contains("Must specify both from and to ports"),
            "{e:?}"
        );
        assert!(ports(RuleProtocol::Udp, Some(10), Some(9)).is_err());
        assert_eq!(
            ports(RuleProtocol::Icmp, Some(-1), Some(-1)).unwrap(),
            (None, None)
        );
        assert_eq!(
            ports(RuleProtocol::All, Some(1), Some(2)).unwrap(),
            (None, None)
        );
    }

    #[test]
    fn permissions_and_the_legacy_form_are_read() {
        let p = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22\
             &IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0&IpPermissions.1.IpRanges.2.CidrIp=10.0.0.0/8\
             &IpPermissions.2.IpProtocol=-1&IpPermissions.2.Groups.1.GroupId=sg-0123456789abcdef0",
        );
        let got = asked(&p.view()).unwrap();
        assert_eq!(got.len(), 3);
        assert!(matches!(&got[2].3, AskedPeer::GroupId(g) if g == "sg-0123456789abcdef0"));
        let legacy = params("IpProtocol=tcp&FromPort=80&ToPort=80&CidrIp=0.0.0.0/0");
        assert_eq!(asked(&legacy.view()).unwrap().len(), 1);
        let both = params(
            "IpProtocol=tcp&FromPort=80&ToPort=80&CidrIp=0.0.0.0/0&IpPermissions.1.IpProtocol=tcp",
        );
        assert_eq!(
            asked(&both.view()).unwrap_err().code,
            "InvalidParameterCombination"
        );
        let empty = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2",
        );
        assert!(asked(&empty.view()).is_err());
        let described = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2\
             &IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0&IpPermissions.1.IpRanges.1.Description=ssh",
        );
        assert_eq!(
            asked(&described.view()).unwrap_err().code,
            "UnsupportedOperation"
        );
    }

    #[test]
    fn rule_ids_are_stable_and_differ_by_rule() {
        let r = SecurityRule::tcp_in(22, 22, "0.0.0.0/0");
        let a = rule_id("sg-0123456789abcdef0", &r, "0.0.0.0/0");
        assert_eq!(a, rule_id("sg-0123456789abcdef0", &r, "0.0.0.0/0"));
        assert!(a.starts_with("sgr-") && a.len() == 21, "{a}");
        let other = SecurityRule::tcp_in(23, 23, "0.0.0.0/0");
        assert_ne!(a, rule_id("sg-0123456789abcdef0", &other, "0.0.0.0/0"));
    }
}
