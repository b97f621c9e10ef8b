//! Security groups: default groups, rules as sets, instances in groups.

use super::*;

async fn default_group(cloud: &MemoryCloud, network: &str) -> SecurityGroup {
    let all = cloud
        .list_security_groups(&SecurityGroupFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    all.items
        .into_iter()
        .find(|g| g.is_default && g.network_id.as_ref().is_some_and(|n| n.as_str() == network))
        .expect("a default group")
}

fn egress_all() -> SecurityRule {
    SecurityRule::all(RuleDirection::Egress, RulePeer::Cidr("0.0.0.0/0".into()))
}

#[tokio::test(start_paused = true)]
async fn every_network_has_a_default_group() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(DELAY));
    let d = default_group(&cloud, "net-default").await;
    assert_eq!(d.name, "default");
    assert!(d.id.as_str().starts_with("sg-"));
    assert_eq!(
        d.rules,
        [
            SecurityRule::all(RuleDirection::Ingress, RulePeer::Group(d.id.clone())),
            egress_all()
        ]
    );
    assert_eq!(d.owner, None);
    // Instances that name no group are in it.
    let vm = cloud.create_instance(&spec("x")).await.unwrap();
    assert_eq!(*vm.security_group_ids, *std::slice::from_ref(&d.id));
    let e = cloud.delete_security_group(&d.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(
        e.message()
            .contains("default group of network `net-default`"),
        "{e}"
    );

    // A new network comes with its own, and takes it along.
    let net = cloud
        .create_network(&NetworkSpec {
            name: "apps".into(),
            cidr: "10.9.0.0/24".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let nd = default_group(&cloud, net.id.as_str()).await;
    assert_ne!(nd.id, d.id);
    let on = cloud
        .create_instance(&InstanceSpec {
            network_ids: vec![net.id.clone()],
            ..spec("on")
        })
        .await
        .unwrap();
    assert_eq!(*on.security_group_ids, *std::slice::from_ref(&nd.id));
    cloud.delete_instance(&on.id).await.unwrap();
    sleep(DELAY).await;
    cloud.delete_network(&net.id).await.unwrap();
    assert_eq!(
        kind(cloud.get_security_group(&nd.id).await),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn groups_are_named_once_per_network() {
    let cloud = MemoryCloud::new();
    let web = cloud
        .create_security_group(
            &SecurityGroupSpec::new("web", "front ends")
                .tag("tier", "web")
                .owner("ann"),
        )
        .await
        .unwrap();
    assert_eq!(
        web.network_id,
        Some("net-default".into()),
        "the default network"
    );
    assert_eq!(
        (web.name.as_str(), web.description.as_str()),
        ("web", "front ends")
    );
    assert_eq!(web.rules, [egress_all()], "EC2's one rule");
    assert!(!web.is_default);
    assert_eq!(web.owner.as_deref(), Some("ann"));
    assert_eq!(web.tags.get("tier").map(String::as_str), Some("web"));
    assert_eq!(cloud.get_security_group(&web.id).await.unwrap(), web);
    for name in ["web", "default"] {
        let e = cloud
            .create_security_group(&SecurityGroupSpec::new(name, ""))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{name}");
    }
    let net = cloud
        .create_network(&NetworkSpec {
            name: "other".into(),
            cidr: "10.8.0.0/24".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let there = cloud
        .create_security_group(&SecurityGroupSpec {
            network_id: Some(net.id.clone()),
            ..SecurityGroupSpec::new("web", "")
        })
        .await
        .unwrap();
    assert_ne!(there.id, web.id);
    // A network with groups of its own stays until they are gone.
    let e = cloud.delete_network(&net.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.message().contains(there.id.as_str()), "{e}");
    cloud.delete_security_group(&there.id).await.unwrap();
    cloud.delete_network(&net.id).await.unwrap();
    let unknown_net = SecurityGroupSpec {
        network_id: Some("net-nope".into()),
        ..SecurityGroupSpec::new("x", "")
    };
    assert_eq!(
        kind(cloud.create_security_group(&unknown_net).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            cloud
                .create_security_group(&SecurityGroupSpec::new(" ", ""))
                .await
        ),
        ErrorKind::InvalidArgument
    );
    cloud.delete_security_group(&web.id).await.unwrap();
    assert_eq!(
        kind(cloud.delete_security_group(&web.id).await),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn rules_are_a_set_in_the_models_order() {
    let cloud = MemoryCloud::new();
    let g = cloud
        .create_security_group(&SecurityGroupSpec::new("g", ""))
        .await
        .unwrap();
    let other = cloud
        .create_security_group(&SecurityGroupSpec::new("other", ""))
        .await
        .unwrap();
    let ssh = SecurityRule::tcp_in(22, 22, "0.0.0.0/0");
    let dns = SecurityRule {
        protocol: RuleProtocol::Udp,
        ..SecurityRule::tcp_in(53, 53, "10.0.0.0/8")
    };
    let ping = SecurityRule {
        protocol: RuleProtocol::Icmp,
        from_port: Some(8),
        to_port: None,
        ..SecurityRule::tcp_in(0, 0, "0.0.0.0/0")
    };
    let peer = SecurityRule {
        peer: RulePeer::Group(other.id.clone()),
        ..SecurityRule::tcp_in(443, 443, "0.0.0.0/0")
    };
    // Added in any order, held in one.
    let added = cloud
        .add_security_rules(
            &g.id,
            &[
                peer.clone(),
                ping.clone(),
                dns.clone(),
                ssh.clone(),
                ssh.clone(),
            ],
        )
        .await
        .unwrap();
    let want = vec![
        ssh.clone(),
        peer.clone(),
        dns.clone(),
        ping.clone(),
        egress_all(),
    ];
    assert_eq!(added.rules, want);
    let again = cloud
        .add_security_rules(&g.id, &[dns.clone(), ssh.clone()])
        .await
        .unwrap();
    assert_eq!(again.rules, want);
    assert_eq!(cloud.get_security_group(&g.id).await.unwrap().rules, want);

    let unknown_peer = SecurityRule {
        peer: RulePeer::Group("sg-0000000000000099".into()),
        ..ssh.clone()
    };
    let e = cloud
        .add_security_rules(&g.id, &[unknown_peer])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("sg-0000000000000099"), "{e}");
    for bad in [vec![], vec![SecurityRule::tcp_in(2, 1, "0.0.0.0/0")]] {
        let e = cloud.add_security_rules(&g.id, &bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.operation(), Some(Operation::AddSecurityRules));
    }
    assert_eq!(
        cloud.get_security_group(&g.id).await.unwrap().rules,
        want,
        "unchanged"
    );

    let left = cloud
        .remove_security_rules(&g.id, &[ssh.clone(), egress_all()])
        .await
        .unwrap();
    assert_eq!(left.rules, [peer.clone(), dns.clone(), ping.clone()]);
    let same = cloud
        .remove_security_rules(&g.id, std::slice::from_ref(&ssh))
        .await
        .unwrap();
    assert_eq!(same.rules, left.rules);
    let unknown = SecurityGroupId::new("sg-0000000000000099");
    assert_eq!(
        kind(
            cloud
                .add_security_rules(&unknown, std::slice::from_ref(&ssh))
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(cloud.remove_security_rules(&unknown, &[ssh]).await),
        ErrorKind::NotFound
    );

    // `other` is named by a rule of `g`: it stays until the rule goes. A group naming
    // itself does not hold itself back.
    let e = cloud.delete_security_group(&other.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.message().contains(g.id.as_str()), "{e}");
    cloud.remove_security_rules(&g.id, &[peer]).await.unwrap();
    let own = SecurityRule {
        peer: RulePeer::Group(other.id.clone()),
        ..SecurityRule::tcp_in(1, 2, "0.0.0.0/0")
    };
    cloud.add_security_rules(&other.id, &[own]).await.unwrap();
    cloud.delete_security_group(&other.id).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn instances_are_made_in_the_groups_named() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(DELAY));
    let web = cloud
        .create_security_group(&SecurityGroupSpec::new("web", ""))
        .await
        .unwrap();
    let db = cloud
        .create_security_group(&SecurityGroupSpec::new("db", ""))
        .await
        .unwrap();
    let vm = cloud
        .create_instance(
            &spec("x")
                .security_group(db.id.clone())
                .security_group(web.id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(*vm.security_group_ids, [db.id.clone(), web.id.clone()]);
    assert_eq!(
        cloud.get_instance(&vm.id).await.unwrap().security_group_ids,
        vm.security_group_ids
    );

    let e = cloud
        .create_instance(&spec("y").security_group("sg-0000000000000099"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let net = cloud
        .create_network(&NetworkSpec {
            name: "n".into(),
            cidr: "10.5.0.0/24".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let elsewhere = cloud
        .create_security_group(&SecurityGroupSpec {
            network_id: Some(net.id.clone()),
            ..SecurityGroupSpec::new("far", "")
        })
        .await
        .unwrap();
    let e = cloud
        .create_instance(&spec("z").security_group(elsewhere.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.context_value("argument"), Some("security_group_ids"));
    assert_eq!(cloud.instance_count(), 1);

    // In use until its instance is terminated.
    let e = cloud.delete_security_group(&web.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert_eq!(e.context_value("instances"), Some("1"));
    cloud.delete_instance(&vm.id).await.unwrap();
    assert_eq!(
        kind(cloud.delete_security_group(&web.id).await),
        ErrorKind::InvalidState
    );
    sleep(DELAY).await;
    cloud.delete_security_group(&web.id).await.unwrap();
    // The terminated instance, still visible, shows the groups it was made in.
    assert_eq!(
        cloud
            .get_instance(&vm.id)
            .await
            .unwrap()
            .security_group_ids
            .len(),
        2
    );
}

#[tokio::test]
async fn group_listings_by_owner_network_and_defaults() {
    let cloud = MemoryCloud::new();
    let mut anns = Vec::new();
    for k in 0..5 {
        let owner = if k % 2 == 0 { "ann" } else { "bob" };
        let g = cloud
            .create_security_group(&SecurityGroupSpec::new(format!("g{k}"), "").owner(owner))
            .await
            .unwrap();
        if owner == "ann" {
            anns.push(g.id);
        }
    }
    let list = |f: SecurityGroupFilter, limit: u32| {
        let cloud = cloud.clone();
        async move {
            let mut ids = Vec::new();
            let mut page = PageRequest::first(limit);
            loop {
                let p = cloud.list_security_groups(&f, &page).await.unwrap();
                if p.next.is_some() {
                    assert_eq!(p.items.len(), limit as usize);
                }
                ids.extend(p.items.into_iter().map(|g| g.id));
                match p.next {
                    Some(t) => page = PageRequest::after(Some(limit), t),
                    None => return ids,
                }
            }
        }
    };
    assert_eq!(list(SecurityGroupFilter::owned_by("ann"), 2).await, anns);
    let d = default_group(&cloud, "net-default").await;
    let mut usable = vec![d.id.clone()];
    usable.extend(anns.iter().cloned());
    assert_eq!(list(SecurityGroupFilter::usable_by("ann"), 1).await, usable);
    assert_eq!(list(SecurityGroupFilter::default(), 2).await.len(), 6);
    let by_net = SecurityGroupFilter {
        network_id: Some("net-nope".into()),
        ..Default::default()
    };
    assert!(list(by_net, 2).await.is_empty());
}
