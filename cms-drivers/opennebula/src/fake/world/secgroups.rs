//! Security groups (`one.secgroup.*`, `one.secgrouppool.info`), as oned's
//! SecurityGroup and SecurityGroupPool keep them: names unique per user, rules checked
//! (`SecurityGroup::is_valid`) and held once, group 0 (oneadmin's `default`, usable by
//! every user) not deletable, a group VMs are in not deletable, user groups from id
//! 100 on. VMs enter the groups their NICs name (and their networks', group 0 by
//! default) when they are created, and leave them when they are done.

use super::*;

/// A security group.
#[derive(Clone, Debug)]
pub(crate) struct GroupRec {
    pub(super) id: i64,
    pub(super) uid: i64,
    gid: i64,
    uname: String,
    gname: String,
    name: String,
    /// DESCRIPTION, RULEs, and whatever else the template holds.
    template: Vec<Element>,
    /// The VMs in the group (their rules up to date: oned's UPDATED_VMS).
    pub(super) vms: BTreeSet<i64>,
}

impl GroupRec {
    /// oned's group 0, as `SecurityGroupPool` bootstraps it.
    pub(super) fn default_group() -> GroupRec {
        GroupRec {
            id: 0,
            uid: 0,
            gid: 0,
            uname: "oneadmin".into(),
            gname: "oneadmin".into(),
            name: "default".into(),
            template: vec![
                Element::leaf(
                    "DESCRIPTION",
                    "The default security group is added to every network. Use it to add \
                     default filter rules for your networks. You may remove this security \
                     group from any network by updating its properties.",
                ),
                vector(
                    "RULE",
                    vec![("PROTOCOL", "ALL".into()), ("RULE_TYPE", "OUTBOUND".into())],
                ),
                vector(
                    "RULE",
                    vec![("PROTOCOL", "ALL".into()), ("RULE_TYPE", "INBOUND".into())],
                ),
            ],
            vms: BTreeSet::new(),
        }
    }

    /// The group's rules as a VM's TEMPLATE carries them (`SECURITY_GROUP_RULE`).
    pub(super) fn vm_rules(&self) -> Vec<Element> {
        self.template
            .iter()
            .filter(|e| e.name == "RULE")
            .map(|r| {
                let mut children = r.children.clone();
                replace_attr(&mut children, "SECURITY_GROUP_ID", self.id.to_string());
                replace_attr(&mut children, "SECURITY_GROUP_NAME", self.name.clone());
                children.sort_by(|a, b| a.name.cmp(&b.name));
                Element {
                    name: "SECURITY_GROUP_RULE".into(),
                    text: String::new(),
                    children,
                }
            })
            .collect()
    }
}

/// `SecurityGroup::is_valid`: why a RULE is refused.
fn rule_error(rule: &Element) -> Option<String> {
    let get = |n: &str| {
        attr(&rule.children, n)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let proto = get("PROTOCOL").to_ascii_uppercase();
    if !["TCP", "UDP", "ICMP", "ICMPV6", "IPSEC", "ALL"].contains(&proto.as_str()) {
        return Some(
            "Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL.".into(),
        );
    }
    let range = get("RANGE");
    if !range.is_empty() {
        if proto != "TCP" && proto != "UDP" {
            return Some("RANGE is supported only for TCP and UDP protocols.".into());
        }
        let mut ports = 0;
        for item in range.split(',') {
            let bounds: Vec<&str> = item.split(':').collect();
            let nums: Option<Vec<u32>> = bounds
                .iter()
                .map(|b| {
                    (!b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
                        .then(|| b.parse().ok())
                        .flatten()
                })
                .collect();
            match nums.as_deref() {
                Some([p]) if *p <= 65535 => ports += 1,
                Some([a, b]) if *b <= 65535 && a <= b => ports += 2,
                Some([a, b]) if *b <= 65535 && a > b => {
                    return Some("RANGE BEGIN value is greater than RANGE END value".into())
                }
                Some([_] | [_, _]) => return Some("RANGE out of bounds 0-65536.".into()),
                _ => return Some("Invalid RANGE specification.".into()),
            }
            if ports > 15 {
                return Some("Not more than 15 ports can be specified in a RULE".into());
            }
        }
    }
    let icmp = get("ICMP_TYPE");
    if !icmp.is_empty() {
        if proto != "ICMP" {
            return Some("ICMP_TYPE is supported only for ICMP protocol.".into());
        }
        if icmp.parse::<u32>().is_err() {
            return Some("Wrong ICMP_TYPE, it must be integer".into());
        }
    }
    let kind = get("RULE_TYPE").to_ascii_uppercase();
    if kind != "INBOUND" && kind != "OUTBOUND" {
        return Some("Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND.".into());
    }
    let ip = get("IP");
    if !ip.is_empty() {
        if get("SIZE").parse::<u32>().is_err() {
            return Some("Wrong or empty SIZE.".into());
        }
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Some("Wrong format for IP value.".into());
        }
    } else {
        let net = get("NETWORK_ID");
        if !net.is_empty() && net.parse::<i64>().is_err() {
            return Some("Wrong NETWORK_ID.".into());
        }
    }
    None
}

/// Checks the RULEs of a template and drops the repeated ones
/// (`SecurityGroup::remove_duplicates`).
fn check_rules(template: &mut Vec<Element>) -> Result<(), String> {
    for r in template.iter().filter(|e| e.name == "RULE") {
        if let Some(why) = rule_error(r) {
            return Err(why);
        }
    }
    let mut seen: Vec<Vec<(String, String)>> = Vec::new();
    template.retain(|e| {
        if e.name != "RULE" {
            return true;
        }
        let mut key: Vec<(String, String)> = e
            .children
            .iter()
            .map(|c| (c.name.clone(), c.text.clone()))
            .collect();
        key.sort();
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    Ok(())
}

impl World {
    /// Group `id` as the user may see it: the user's, or group 0.
    pub(super) fn usable_group(&self, method: &str, id: i64) -> Result<&GroupRec, Failure> {
        let g = self
            .groups
            .get(&id)
            .ok_or_else(|| no_exists(method, "security group", id))?;
        if g.uid != self.user.id && g.id != 0 {
            return Err(not_authorized(method, self.user.id, "security group", id));
        }
        Ok(g)
    }

    fn own_group(&self, method: &str, id: i64) -> Result<&GroupRec, Failure> {
        let g = self.usable_group(method, id)?;
        if g.uid != self.user.id {
            return Err(not_authorized(method, self.user.id, "security group", id));
        }
        Ok(g)
    }

    /// `one.secgroup.allocate`.
    pub(super) fn group_allocate(&mut self, method: &str, text: &str) -> Answer {
        let mut template = parse_template(method, text)?;
        let name = attr(&template, "NAME").unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(fail(
                method,
                INTERNAL,
                "No NAME in template for Security Group.",
            ));
        }
        if let Some(why) = name_error(&name) {
            return Err(fail(method, INTERNAL, why));
        }
        if let Some(taken) = self
            .groups
            .values()
            .find(|g| g.name == name && g.uid == self.user.id)
        {
            return Err(fail(
                method,
                INTERNAL,
                format!("NAME is already taken by SecurityGroup {}.", taken.id),
            ));
        }
        template.retain(|e| e.name != "NAME");
        check_rules(&mut template).map_err(|why| fail(method, INTERNAL, why))?;
        let id = self.next_group;
        self.next_group += 1;
        self.groups.insert(
            id,
            GroupRec {
                id,
                uid: self.user.id,
                gid: self.user.gid,
                uname: self.user.name.clone(),
                gname: self.user.gname.clone(),
                name,
                template,
                vms: BTreeSet::new(),
            },
        );
        Ok(Value::Int(id))
    }

    /// `one.secgroup.update`: the template replaced (0) or merged into (1), its rules
    /// checked; the VMs in the group get the new rules.
    pub(super) fn group_update(
        &mut self,
        method: &str,
        id: i64,
        text: &str,
        update_type: i64,
    ) -> Answer {
        self.own_group(method, id)?;
        if !(0..=1).contains(&update_type) {
            return Err(fail(method, RPC_API, "Wrong update type"));
        }
        let new = parse_template(method, text)?;
        let Some(g) = self.groups.get(&id) else {
            return Err(no_exists(method, "security group", id));
        };
        let mut template = if update_type == 0 {
            new
        } else {
            let mut t = g.template.clone();
            for e in &new {
                t.retain(|m| m.name != e.name);
            }
            t.extend(new);
            t
        };
        template.retain(|e| e.name != "NAME");
        check_rules(&mut template)
            .map_err(|why| fail(method, INTERNAL, format!("Cannot update template. {why}")))?;
        let vms: Vec<i64> = g.vms.iter().copied().collect();
        if let Some(g) = self.groups.get_mut(&id) {
            g.template = template;
        }
        // The VMs' copies of the rules follow.
        let rules = self
            .groups
            .get(&id)
            .map(GroupRec::vm_rules)
            .unwrap_or_default();
        for vm in vms {
            if let Some(vm) = self.vms.get_mut(&vm) {
                vm.template.retain(|e| {
                    !(e.name == "SECURITY_GROUP_RULE"
                        && attr(&e.children, "SECURITY_GROUP_ID") == Some(&id.to_string()))
                });
                vm.template.extend(rules.iter().cloned());
                sort_vm_template(&mut vm.template);
            }
        }
        Ok(Value::Int(id))
    }

    /// `one.secgroup.delete`.
    pub(super) fn group_delete(&mut self, method: &str, id: i64) -> Answer {
        let g = self.own_group(method, id)?;
        if id == 0 {
            return Err(fail(
                method,
                ACTION,
                "Cannot delete security group. The default security group (ID 0) cannot be deleted.",
            ));
        }
        if !g.vms.is_empty() {
            return Err(fail(
                method,
                ACTION,
                "Cannot delete security group. The security group has VMs using it",
            ));
        }
        self.groups.remove(&id);
        Ok(Value::Int(id))
    }
}

/// A `SECURITY_GROUP` document, per security_group.xsd (template attributes in name
/// order, as oned writes them).
pub(crate) fn group_document(out: &mut String, g: &GroupRec) {
    let _ = write!(
        out,
        "<SECURITY_GROUP><ID>{}</ID><UID>{}</UID><GID>{}</GID><UNAME>{}</UNAME><GNAME>{}</GNAME>\
         <NAME>{}</NAME>",
        g.id,
        g.uid,
        g.gid,
        escape(&g.uname),
        escape(&g.gname),
        escape(&g.name)
    );
    permissions(out, true, g.id == 0);
    out.push_str("<UPDATED_VMS>");
    for v in &g.vms {
        let _ = write!(out, "<ID>{v}</ID>");
    }
    out.push_str("</UPDATED_VMS><OUTDATED_VMS></OUTDATED_VMS><UPDATING_VMS></UPDATING_VMS><ERROR_VMS></ERROR_VMS><TEMPLATE>");
    let mut template = g.template.clone();
    template.sort_by(|a, b| a.name.cmp(&b.name));
    for e in template.iter_mut() {
        e.children.sort_by(|a, b| a.name.cmp(&b.name));
    }
    write_attrs(out, &template);
    out.push_str("</TEMPLATE></SECURITY_GROUP>");
}
