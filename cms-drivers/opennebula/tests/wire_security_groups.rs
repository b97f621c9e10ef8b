//! Security groups on the wire: the RULE vectors the driver writes and reads, rules
//! made outside cms, instances put in groups through their NICs, and oned's refusals —
//! over real sockets against the fake oned.

mod common;

use cms_core::{
    Driver, ErrorKind, InstanceSpec, InstanceState, Operation, RuleDirection, RulePeer,
    RuleProtocol, SecurityGroupFilter, SecurityGroupId, SecurityGroupSpec, SecurityRule,
};
use cms_driver_opennebula::model::{Attributes, SecurityGroup, Vm};
use cms_driver_opennebula::xmlrpc::Value;
use cms_driver_opennebula::OpenNebulaDriver;

use common::*;

async fn group_doc(driver: &OpenNebulaDriver, id: &SecurityGroupId) -> SecurityGroup {
    let id: i64 = id.as_str().parse().unwrap();
    match driver
        .client()
        .call("one.secgroup.info", &[Value::Int(id)])
        .await
    {
        Ok(Value::Str(s)) => SecurityGroup::from_xml(&s).unwrap(),
        other => panic!("one.secgroup.info {id}: {other:?}"),
    }
}

/// A RULE's attributes, as `NAME=value` in name order.
fn flat(rule: &Attributes) -> String {
    let mut kv: Vec<String> = rule
        .entries
        .iter()
        .map(|(k, v)| match v {
            cms_driver_opennebula::model::Attribute::Single(s) => format!("{k}={s}"),
            cms_driver_opennebula::model::Attribute::Vector(_) => format!("{k}=[..]"),
        })
        .collect();
    kv.sort();
    kv.join(" ")
}

fn icmp_in(t: u16, code: Option<u16>, cidr: &str) -> SecurityRule {
    SecurityRule {
        protocol: RuleProtocol::Icmp,
        from_port: Some(t),
        to_port: code,
        ..SecurityRule::tcp_in(0, 0, cidr)
    }
}

#[tokio::test]
async fn rules_are_rule_vectors_held_once() {
    let (oned, driver) = start(quick_config());
    let g = driver
        .create_security_group(
            &SecurityGroupSpec::new("web", "the web tier")
                .owner("team-a")
                .tag("env", "prod"),
        )
        .await
        .unwrap();
    assert!(g.rules.is_empty(), "OpenNebula gives a new group no rules");
    assert_eq!(
        (g.owner.as_deref(), g.description.as_str()),
        (Some("team-a"), "the web tier")
    );
    let id: i64 = g.id.as_str().parse().unwrap();
    assert!(id >= 100, "user groups start at 100");
    let rules = [
        SecurityRule::tcp_in(22, 22, "0.0.0.0/0"),
        SecurityRule::tcp_in(8000, 8080, "10.1.0.0/16"),
        icmp_in(8, None, "192.0.2.7/32"),
        SecurityRule::all(RuleDirection::Egress, RulePeer::Cidr("0.0.0.0/0".into())),
    ];
    let after = driver.add_security_rules(&g.id, &rules).await.unwrap();
    let mut want = rules.to_vec();
    want.sort();
    assert_eq!(after.rules, want, "a rule read back equals the rule added");
    let doc = group_doc(&driver, &g.id).await;
    let written: Vec<String> = doc.rules().map(flat).collect();
    assert_eq!(
        written,
        [
            "PROTOCOL=TCP RANGE=22 RULE_TYPE=INBOUND",
            "IP=10.1.0.0 PROTOCOL=TCP RANGE=8000:8080 RULE_TYPE=INBOUND SIZE=65536",
            "ICMP_TYPE=8 IP=192.0.2.7 PROTOCOL=ICMP RULE_TYPE=INBOUND SIZE=1",
            "PROTOCOL=ALL RULE_TYPE=OUTBOUND",
        ]
    );
    assert_eq!(doc.template.get("CMS_OWNER"), Some("team-a"));
    assert_eq!(doc.template.get("DESCRIPTION"), Some("the web tier"));

    // Adding held rules changes nothing, and writes nothing.
    let updates = oned.calls("one.secgroup.update");
    let same = driver.add_security_rules(&g.id, &rules[..2]).await.unwrap();
    assert_eq!(same.rules, want);
    assert_eq!(oned.calls("one.secgroup.update"), updates);

    // Removing one leaves the others (and the template's other attributes) alone;
    // removing one not held is no error.
    let fewer = driver
        .remove_security_rules(
            &g.id,
            &[rules[1].clone(), SecurityRule::tcp_in(1, 1, "0.0.0.0/0")],
        )
        .await
        .unwrap();
    assert_eq!(fewer.rules.len(), 3);
    assert!(!fewer.rules.contains(&rules[1]));
    assert_eq!(fewer.owner.as_deref(), Some("team-a"));
    assert_eq!(fewer.tags["env"], "prod");

    // What OpenNebula cannot hold.
    for (bad, why) in [
        (
            SecurityRule::all(RuleDirection::Ingress, RulePeer::Group(g.id.clone())),
            "not other groups",
        ),
        (icmp_in(3, Some(4), "0.0.0.0/0"), "ICMP by type only"),
    ] {
        let e = driver.add_security_rules(&g.id, &[bad]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.message().contains(why), "{e}");
        assert_eq!(e.operation(), Some(Operation::AddSecurityRules));
    }
    let caps = driver.capabilities().security_groups;
    assert!(caps.egress && !caps.group_peers);
}

#[tokio::test]
async fn rules_made_outside_cms_are_read_and_kept() {
    let (_oned, driver) = start(quick_config());
    let g = driver
        .create_security_group(&SecurityGroupSpec::new("made-elsewhere", ""))
        .await
        .unwrap();
    let id: i64 = g.id.as_str().parse().unwrap();
    // As Sunstone writes them: a list of ports, an address range that is no block, a
    // virtual network, IPsec — and a rule given twice, which oned keeps once.
    let template = "<TEMPLATE>\
        <RULE><PROTOCOL>TCP</PROTOCOL><RULE_TYPE>inbound</RULE_TYPE><RANGE>22,80:81</RANGE><IP>10.0.0.4</IP><SIZE>6</SIZE></RULE>\
        <RULE><PROTOCOL>TCP</PROTOCOL><RULE_TYPE>INBOUND</RULE_TYPE><NETWORK_ID>1</NETWORK_ID></RULE>\
        <RULE><PROTOCOL>IPSEC</PROTOCOL><RULE_TYPE>INBOUND</RULE_TYPE></RULE>\
        <RULE><PROTOCOL>UDP</PROTOCOL><RULE_TYPE>OUTBOUND</RULE_TYPE></RULE>\
        <RULE><PROTOCOL>UDP</PROTOCOL><RULE_TYPE>OUTBOUND</RULE_TYPE></RULE>\
        <LABELS>made by hand</LABELS></TEMPLATE>";
    driver
        .client()
        .call(
            "one.secgroup.update",
            &[Value::Int(id), Value::from(template), Value::Int(0)],
        )
        .await
        .unwrap();
    assert_eq!(
        group_doc(&driver, &g.id).await.rules().count(),
        4,
        "oned holds a rule once"
    );
    let seen = driver.get_security_group(&g.id).await.unwrap();
    let mut peers: Vec<(Option<u16>, String)> = seen
        .rules
        .iter()
        .filter(|r| r.protocol == RuleProtocol::Tcp)
        .map(|r| match &r.peer {
            RulePeer::Cidr(c) => (r.from_port, c.clone()),
            RulePeer::Group(_) => unreachable!(),
        })
        .collect();
    peers.sort();
    assert_eq!(
        peers,
        [
            (Some(22), "10.0.0.4/30".to_owned()),
            (Some(22), "10.0.0.8/31".to_owned()),
            (Some(80), "10.0.0.4/30".to_owned()),
            (Some(80), "10.0.0.8/31".to_owned()),
        ]
    );
    let udp = seen
        .rules
        .iter()
        .find(|r| r.protocol == RuleProtocol::Udp)
        .unwrap();
    assert_eq!(
        (udp.from_port, udp.to_port),
        (Some(0), Some(65535)),
        "no RANGE: every port"
    );

    // Removing part of a rule rewrites it as the rest; the rules cms cannot express and
    // the other attributes stay.
    let part = SecurityRule {
        from_port: Some(80),
        to_port: Some(81),
        ..SecurityRule::tcp_in(0, 0, "10.0.0.8/31")
    };
    let left = driver
        .remove_security_rules(&g.id, std::slice::from_ref(&part))
        .await
        .unwrap();
    assert_eq!(left.rules.len(), seen.rules.len() - 1);
    assert!(!left.rules.contains(&part));
    let doc = group_doc(&driver, &g.id).await;
    let written: Vec<String> = doc.rules().map(flat).collect();
    assert!(
        written.contains(&"NETWORK_ID=1 PROTOCOL=TCP RULE_TYPE=INBOUND".to_owned()),
        "{written:?}"
    );
    assert!(
        written.contains(&"PROTOCOL=IPSEC RULE_TYPE=INBOUND".to_owned()),
        "{written:?}"
    );
    assert_eq!(doc.template.get("LABELS"), Some("made by hand"));
    // The same udp rule in cms form is held: adding it writes nothing new.
    let again = driver
        .add_security_rules(&g.id, std::slice::from_ref(udp))
        .await
        .unwrap();
    assert_eq!(again.rules, left.rules);
}

#[tokio::test]
async fn groups_are_names_of_the_account_and_group_0_is_the_default() {
    let (oned, driver) = start(quick_config());
    let cloud = cloud(driver.clone());
    let all = cloud
        .collect_security_groups(&SecurityGroupFilter::default())
        .await
        .unwrap();
    let default = all.iter().find(|g| g.is_default).unwrap();
    assert_eq!(
        (default.id.as_str(), default.name.as_str()),
        ("0", "default")
    );
    assert_eq!(default.rules.len(), 2, "all in, all out");
    let deletes = oned.calls("one.secgroup.delete");
    let e = driver.delete_security_group(&default.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_eq!(oned.calls("one.secgroup.delete"), deletes);

    driver
        .create_security_group(&SecurityGroupSpec::new("twice", ""))
        .await
        .unwrap();
    let e = driver
        .create_security_group(&SecurityGroupSpec::new("twice", "again"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(e.context_value("opennebula_error"), Some("0x2000"));
    let e = driver
        .create_security_group(&SecurityGroupSpec::new("a|b", ""))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // Groups belong to no network: one named must exist, and the group is the account's.
    let e = driver
        .create_security_group(&SecurityGroupSpec {
            network_id: Some("77".into()),
            ..SecurityGroupSpec::new("scoped", "")
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let scoped = driver
        .create_security_group(&SecurityGroupSpec {
            network_id: Some("0".into()),
            ..SecurityGroupSpec::new("scoped", "")
        })
        .await
        .unwrap();
    assert_eq!(scoped.network_id, None);
    // The default group is usable by every owner, and belongs to none.
    let usable = cloud
        .collect_security_groups(&SecurityGroupFilter::usable_by("team-z"))
        .await
        .unwrap();
    assert_eq!(usable.len(), 1);
    assert!(usable[0].is_default && usable[0].owner.is_none());
    for missing in ["77", "sg-1"] {
        let e = driver
            .get_security_group(&missing.into())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{missing}: {e}");
    }
}

#[tokio::test]
async fn instances_are_in_groups_through_their_nics() {
    let (oned, driver) = start(quick_config());
    let g = driver
        .create_security_group(&SecurityGroupSpec::new("app", ""))
        .await
        .unwrap();
    driver
        .add_security_rules(&g.id, &[SecurityRule::tcp_in(443, 443, "0.0.0.0/0")])
        .await
        .unwrap();
    let vm = driver
        .create_instance(&InstanceSpec {
            network_ids: vec!["0".into(), "1".into()],
            ..InstanceSpec::new("image:0", "small").security_group(g.id.clone())
        })
        .await
        .unwrap();
    let groups: Vec<&str> = vm.security_group_ids.iter().map(|g| g.as_str()).collect();
    assert_eq!(
        groups,
        ["0", g.id.as_str()],
        "the networks add the default group"
    );
    let id: i64 = vm.id.as_str().parse().unwrap();
    let doc = match driver.client().call("one.vm.info", &[Value::Int(id)]).await {
        Ok(Value::Str(s)) => Vm::from_xml(&s).unwrap(),
        other => panic!("{other:?}"),
    };
    let nic_groups: Vec<Option<&str>> = doc.nics().map(|n| n.get("SECURITY_GROUPS")).collect();
    let both = format!("0,{}", g.id);
    assert_eq!(nic_groups, [Some(both.as_str()), Some(both.as_str())]);
    assert!(
        doc.template
            .vectors("SECURITY_GROUP_RULE")
            .any(|r| r.get("RANGE") == Some("443")),
        "oned copies the groups' rules into the VM"
    );
    // The group is in use until the VM is done.
    let e = driver.delete_security_group(&g.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_eq!(e.context_value("opennebula_error"), Some("0x800"));

    // From a VM template: its own NICs, put in the group.
    let t = driver
        .create_instance(&InstanceSpec::new("template:0", "small").security_group(g.id.clone()))
        .await
        .unwrap();
    assert!(t.security_group_ids.contains(&g.id));
    assert_eq!(t.network_ids.len(), 1, "template 0's NIC");

    // An unknown group is not found before anything is made (oned would skip it).
    let allocs = oned.calls("one.vm.allocate");
    let e = driver
        .create_instance(&InstanceSpec::new("image:0", "small").security_group("555"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(oned.calls("one.vm.allocate"), allocs);
    // Without any NIC there is nothing to put in a group.
    let e = driver
        .create_instance(&InstanceSpec::new("image:0", "small").security_group(g.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(e.context_value("argument"), Some("security_group_ids"));

    for i in [&vm.id, &t.id] {
        wait(&driver, i, InstanceState::Running).await;
        driver.delete_instance(i).await.unwrap();
        wait(&driver, i, InstanceState::Terminated).await;
    }
    driver.delete_security_group(&g.id).await.unwrap();
}
