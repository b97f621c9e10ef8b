//! The driver reads documents written by hand, as oned writes them: every STATE and
//! LCM_STATE pair, several NICs and DISKs, CDATA everywhere, and each pool document.

mod common;

use cms_core::{
    ImageState, InstanceState, LocationId, NetworkId, RuleDirection, RulePeer, RuleProtocol,
    SecurityRule, SnapshotState, VolumeState,
};

use cms_driver_opennebula::driver::{disk_use, Hotplug};
use cms_driver_opennebula::model::{
    ClusterPool, HostPool, Image, ImagePool, SecurityGroup, SecurityGroupPool, User,
    VirtualNetwork, Vm, VmPool, VmTemplatePool, VnetPool,
};
use cms_driver_opennebula::{OpenNebulaConfig, OpenNebulaDriver};
use common::fuzz_seed;

fn driver() -> OpenNebulaDriver {
    let config = OpenNebulaConfig::new("http://127.0.0.1:9/RPC2", "cms", "UNUSED");
    OpenNebulaDriver::with_session(config, "cms", "not-used").unwrap()
}

/// A full `VM` document (one.vm.info) in the given state, with two NICs, three disks,
/// two history records and CDATA values.
fn vm_doc(state: i64, lcm: i64, last_action: i64) -> String {
    format!(
        r#"<VM>
  <ID>42</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME>
  <NAME><![CDATA[web & db]]></NAME>
  <PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>
  <LAST_POLL>1700000100</LAST_POLL>
  <STATE>{state}</STATE><LCM_STATE>{lcm}</LCM_STATE><PREV_STATE>3</PREV_STATE><PREV_LCM_STATE>3</PREV_LCM_STATE>
  <RESCHED>0</RESCHED><STIME>1700000000</STIME><ETIME>0</ETIME><DEPLOY_ID>one-42</DEPLOY_ID>
  <MONITORING><CPU><![CDATA[1.5]]></CPU></MONITORING>
  <SCHED_ACTIONS/>
  <TEMPLATE>
    <CONTEXT><NETWORK><![CDATA[YES]]></NETWORK><SSH_PUBLIC_KEY><![CDATA[ssh-ed25519 AAAA x]]></SSH_PUBLIC_KEY></CONTEXT>
    <CPU><![CDATA[0.5]]></CPU>
    <DISK><DISK_ID><![CDATA[0]]></DISK_ID><IMAGE><![CDATA[ubuntu]]></IMAGE><IMAGE_ID><![CDATA[12]]></IMAGE_ID></DISK>
    <DISK><DISK_ID><![CDATA[1]]></DISK_ID><IMAGE_ID><![CDATA[13]]></IMAGE_ID></DISK>
    <DISK><DISK_ID><![CDATA[2]]></DISK_ID><TYPE><![CDATA[fs]]></TYPE><SIZE><![CDATA[1024]]></SIZE></DISK>
    <MEMORY><![CDATA[1024]]></MEMORY>
    <NIC><AR_ID><![CDATA[0]]></AR_ID><IP><![CDATA[10.0.0.5]]></IP><NETWORK><![CDATA[public]]></NETWORK><NETWORK_ID><![CDATA[0]]></NETWORK_ID><NIC_ID><![CDATA[0]]></NIC_ID><EXTERNAL_IP><![CDATA[203.0.113.7]]></EXTERNAL_IP></NIC>
    <NIC><IP><![CDATA[192.168.100.10]]></IP><NETWORK_ID><![CDATA[1]]></NETWORK_ID><NIC_ID><![CDATA[1]]></NIC_ID></NIC>
    <TEMPLATE_ID><![CDATA[7]]></TEMPLATE_ID>
    <TM_MAD_SYSTEM><![CDATA[shared]]></TM_MAD_SYSTEM>
    <VCPU><![CDATA[2]]></VCPU>
    <VMID><![CDATA[42]]></VMID>
  </TEMPLATE>
  <USER_TEMPLATE>
    <CMS_CLIENT_TOKEN><![CDATA[tok-9]]></CMS_CLIENT_TOKEN>
    <CMS_FLAVOR><![CDATA[small]]></CMS_FLAVOR>
    <CMS_IMAGE><![CDATA[template:7]]></CMS_IMAGE>
    <CMS_KEY_NAME><![CDATA[laptop]]></CMS_KEY_NAME>
    <CMS_TAGS><![CDATA[{{"env":"prod","odd key":"a<b>&c ]]]]><![CDATA[> d"}}]]></CMS_TAGS>
    <LOGO><![CDATA[images/logos/ubuntu.png]]></LOGO>
    <SCHED_ACTION><ID>0</ID><ACTION><![CDATA[poweroff]]></ACTION></SCHED_ACTION>
  </USER_TEMPLATE>
  <HISTORY_RECORDS>
    <HISTORY><OID>42</OID><SEQ>1</SEQ><HOSTNAME>node02</HOSTNAME><HID>1</HID><CID>100</CID><STIME>1700000050</STIME><ETIME>0</ETIME><VM_MAD><![CDATA[kvm]]></VM_MAD><TM_MAD><![CDATA[shared]]></TM_MAD><DS_ID>0</DS_ID><PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID><PSTIME>0</PSTIME><PETIME>0</PETIME><RSTIME>0</RSTIME><RETIME>0</RETIME><ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>{last_action}</ACTION><UID>2</UID><GID>1</GID><REQUEST_ID>-1</REQUEST_ID></HISTORY>
    <HISTORY><OID>42</OID><SEQ>0</SEQ><HOSTNAME>node01</HOSTNAME><HID>0</HID><CID>0</CID><STIME>1700000000</STIME><ETIME>1700000050</ETIME><VM_MAD><![CDATA[kvm]]></VM_MAD><TM_MAD><![CDATA[shared]]></TM_MAD><DS_ID>0</DS_ID><PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID><PSTIME>0</PSTIME><PETIME>0</PETIME><RSTIME>0</RSTIME><RETIME>0</RETIME><ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>1</ACTION><UID>2</UID><GID>1</GID><REQUEST_ID>-1</REQUEST_ID></HISTORY>
  </HISTORY_RECORDS>
  <BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS>
</VM>"#
    )
}

/// OpenNebula's names, written out again (VirtualMachine.h), for the expected raw
/// states.
const STATES: [&str; 12] = [
    "INIT",
    "PENDING",
    "HOLD",
    "ACTIVE",
    "STOPPED",
    "SUSPENDED",
    "DONE",
    "FAILED",
    "POWEROFF",
    "UNDEPLOYED",
    "CLONING",
    "CLONING_FAILURE",
];

/// The architecture table, restated by LCM_STATE name: the cms state of an ACTIVE VM.
fn expected_active(lcm_name: &str) -> InstanceState {
    use InstanceState::*;
    let n = lcm_name;
    if n == "UNKNOWN" {
        Unknown
    } else if n.ends_with("_FAILURE") || n == "FAILURE" {
        Error
    } else if n == "RUNNING"
        || n == "MIGRATE"
        || n == "BACKUP"
        || n == "HOTPLUG_RESIZE"
        || n == "DISK_RESIZE"
        || (n.starts_with("HOTPLUG")
            && !n.contains("POWEROFF")
            && !n.contains("SUSPENDED")
            && !n.contains("UNDEPLOYED")
            && !n.contains("STOPPED"))
        || (n.starts_with("DISK_SNAPSHOT") && !n.contains("POWEROFF") && !n.contains("SUSPENDED"))
    {
        Running
    } else if n.starts_with("BOOT")
        || (n.starts_with("PROLOG") && !n.contains("POWEROFF") && !n.contains("SUSPEND"))
    {
        // Booting or copying towards a boot, whatever it comes from.
        Pending
    } else if n.starts_with("SHUTDOWN_")
        || n == "EPILOG_STOP"
        || n == "EPILOG_UNDEPLOY"
        || n.starts_with("SAVE_STOP")
        || n == "SAVE_SUSPEND"
    {
        Stopping
    } else if n.contains("POWEROFF")
        || n.contains("UNDEPLOYED")
        || n.ends_with("_STOPPED")
        || n == "RESTORE"
    {
        Stopped
    } else if n.contains("SUSPEND") {
        Suspended
    } else if n == "SHUTDOWN" || n == "EPILOG" || n == "CANCEL" || n == "CLEANUP_DELETE" {
        Terminating
    } else if n == "LCM_INIT"
        || n.starts_with("PROLOG")
        || n.starts_with("BOOT")
        || n == "SAVE_MIGRATE"
        || n == "CLEANUP_RESUBMIT"
    {
        Pending
    } else {
        panic!("no expectation for LCM state {n}")
    }
}

fn expected_inactive(state_name: &str) -> InstanceState {
    use InstanceState::*;
    match state_name {
        "INIT" | "PENDING" | "HOLD" | "CLONING" => Pending,
        "STOPPED" | "POWEROFF" | "UNDEPLOYED" => Stopped,
        "SUSPENDED" => Suspended,
        "DONE" => Terminated,
        "FAILED" | "CLONING_FAILURE" => Error,
        other => panic!("no expectation for STATE {other}"),
    }
}

#[test]
fn every_state_and_lcm_state_pair_maps_as_the_table_says() {
    let d = driver();
    let lcm_names = cms_driver_opennebula::driver::LCM_STATES;
    assert_eq!(
        lcm_names.len(),
        72,
        "LCM_STATE codes 0..=71 of OpenNebula 7"
    );
    let mut checked = 0;
    for (state, state_name) in STATES.iter().enumerate() {
        let state = state as i64;
        let lcms: Vec<i64> = if state == 3 {
            (0..72).collect()
        } else {
            vec![0]
        };
        for lcm in lcms {
            let vm = Vm::from_xml(&vm_doc(state, lcm, 0)).unwrap();
            let i = d.instance_of(&vm);
            let (want_raw, want) = if state == 3 {
                let n = lcm_names[lcm as usize];
                (format!("ACTIVE/{n}"), expected_active(n))
            } else {
                (state_name.to_string(), expected_inactive(state_name))
            };
            assert_eq!(i.raw_state, want_raw);
            assert_eq!(i.state, want, "{want_raw}");
            checked += 1;
        }
    }
    assert_eq!(checked, 11 + 72);
    // BOOT after a reboot is rebooting; codes newer than the driver are unknown.
    let rebooting = d.instance_of(&Vm::from_xml(&vm_doc(3, 2, 15)).unwrap());
    assert_eq!(rebooting.state, InstanceState::Rebooting);
    let newer = d.instance_of(&Vm::from_xml(&vm_doc(3, 80, 0)).unwrap());
    assert_eq!(
        (newer.state, newer.raw_state.as_str()),
        (InstanceState::Unknown, "ACTIVE/LCM_80")
    );
    let newer = d.instance_of(&Vm::from_xml(&vm_doc(12, 0, 0)).unwrap());
    assert_eq!(
        (newer.state, newer.raw_state.as_str()),
        (InstanceState::Unknown, "STATE_12")
    );
}

#[test]
fn a_vm_document_reads_fully() {
    fuzz_seed(
        "opennebula_documents",
        "ok-vm-6",
        vm_doc(3, 3, 0).as_bytes(),
    );
    let vm = Vm::from_xml(&vm_doc(3, 3, 0)).unwrap();
    assert_eq!(vm.name, "web & db");
    assert_eq!(vm.disks().count(), 3);
    assert_eq!(vm.nics().count(), 2);
    assert_eq!(vm.prev_lcm_state, Some(3));
    assert_eq!(
        vm.last_history().map(|h| h.hostname.as_str()),
        Some("node02")
    );
    let i = driver().instance_of(&vm);
    assert_eq!(i.id.as_str(), "42");
    assert_eq!(i.image_id.as_ref().map(|x| x.as_str()), Some("template:7"));
    assert_eq!(i.flavor_id.as_ref().map(|x| x.as_str()), Some("small"));
    assert_eq!(i.network_ids, [NetworkId::new("0"), NetworkId::new("1")]);
    assert_eq!(i.private_ips, ["10.0.0.5", "192.168.100.10"]);
    assert_eq!(i.public_ips, ["203.0.113.7"]);
    assert_eq!(
        i.location_id,
        Some(LocationId::new("100")),
        "the latest history record"
    );
    assert_eq!(i.key_name.as_deref(), Some("laptop"));
    assert_eq!(i.client_token.as_deref(), Some("tok-9"));
    assert_eq!(i.tags["env"], "prod");
    assert_eq!(
        i.tags["odd key"], "a<b>&c ]]> d",
        "CDATA split around `]]>`"
    );
    assert_eq!(i.created_at.map(|t| t.timestamp()), Some(1_700_000_000));

    // Not made by cms: the image comes from the first disk, no flavor.
    let plain = vm_doc(3, 3, 0).replace("<CMS_IMAGE><![CDATA[template:7]]></CMS_IMAGE>", "")
        .replace("<CMS_FLAVOR><![CDATA[small]]></CMS_FLAVOR>", "")
        .replace(r#"<CMS_TAGS><![CDATA[{"env":"prod","odd key":"a<b>&c ]]]]><![CDATA[> d"}]]></CMS_TAGS>"#, "<CMS_TAGS><![CDATA[not json]]></CMS_TAGS>");
    let i = driver().instance_of(&Vm::from_xml(&plain).unwrap());
    assert_eq!(i.image_id.as_ref().map(|x| x.as_str()), Some("image:12"));
    assert_eq!(i.flavor_id, None);
    assert!(i.tags.is_empty(), "malformed tags are ignored");
}

#[test]
fn a_vm_pool_in_short_form_reads() {
    let doc = r#"<VM_POOL>
<VM><ID>3</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME><NAME>a</NAME><LAST_POLL>0</LAST_POLL><STATE>8</STATE><LCM_STATE>0</LCM_STATE><RESCHED>0</RESCHED><STIME>1</STIME><ETIME>0</ETIME><DEPLOY_ID/><TEMPLATE><CPU><![CDATA[1]]></CPU><MEMORY><![CDATA[512]]></MEMORY><DISK><IMAGE_ID><![CDATA[4]]></IMAGE_ID></DISK><NIC><IP><![CDATA[10.1.1.1]]></IP><NETWORK_ID><![CDATA[5]]></NETWORK_ID></NIC><NIC><IP><![CDATA[10.1.2.1]]></IP><NETWORK_ID><![CDATA[6]]></NETWORK_ID></NIC></TEMPLATE><USER_TEMPLATE/><HISTORY_RECORDS><HISTORY><OID>3</OID><SEQ>0</SEQ><HOSTNAME>h</HOSTNAME><HID>0</HID><CID>0</CID><DS_ID>0</DS_ID><VM_MAD>kvm</VM_MAD><TM_MAD>ssh</TM_MAD><ACTION>19</ACTION></HISTORY></HISTORY_RECORDS></VM>
<VM><ID>9</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME><NAME>b</NAME><LAST_POLL>0</LAST_POLL><STATE>1</STATE><LCM_STATE>0</LCM_STATE><RESCHED>0</RESCHED><STIME>2</STIME><ETIME>0</ETIME><DEPLOY_ID/><TEMPLATE/><USER_TEMPLATE/><HISTORY_RECORDS/></VM>
</VM_POOL>"#;
    fuzz_seed("opennebula_documents", "ok-vm-pool-short", doc.as_bytes());
    let pool = VmPool::from_xml(doc).unwrap();
    let d = driver();
    let i: Vec<_> = pool.vms.iter().map(|v| d.instance_of(v)).collect();
    assert_eq!(i.len(), 2);
    assert_eq!(
        (i[0].state, i[0].raw_state.as_str()),
        (InstanceState::Stopped, "POWEROFF")
    );
    assert_eq!(i[0].network_ids.len(), 2);
    assert_eq!(i[0].image_id.as_ref().map(|x| x.as_str()), Some("image:4"));
    assert_eq!(
        (i[1].state, i[1].location_id.clone()),
        (InstanceState::Pending, None)
    );
    assert!(VmPool::from_xml("<VM_POOL/>").unwrap().vms.is_empty());
}

#[test]
fn catalogue_documents_read() {
    let images = ImagePool::from_xml(
        r#"<IMAGE_POOL><IMAGE><ID>0</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>ubuntu</NAME><TYPE>0</TYPE><DISK_TYPE>0</DISK_TYPE><PERSISTENT>1</PERSISTENT><SIZE>2252</SIZE><STATE>2</STATE><DATASTORE>default</DATASTORE><TEMPLATE><DESCRIPTION><![CDATA[Ubuntu <24.04>]]></DESCRIPTION></TEMPLATE></IMAGE><IMAGE><ID>5</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>data</NAME><TYPE>2</TYPE><STATE>1</STATE><TEMPLATE/></IMAGE></IMAGE_POOL>"#,
    )
    .unwrap();
    assert_eq!(images.images.len(), 2);
    assert!(images.images[0].persistent);
    assert_eq!(
        images.images[0].template.get("DESCRIPTION"),
        Some("Ubuntu <24.04>")
    );
    assert_eq!(images.images[1].image_type, 2);

    let templates = VmTemplatePool::from_xml(
        r#"<VMTEMPLATE_POOL><VMTEMPLATE><ID>7</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>small</NAME><REGTIME>5</REGTIME><TEMPLATE><CPU><![CDATA[0.5]]></CPU><MEMORY><![CDATA[512]]></MEMORY><OS><ARCH><![CDATA[x86_64]]></ARCH></OS></TEMPLATE></VMTEMPLATE></VMTEMPLATE_POOL>"#,
    )
    .unwrap();
    assert_eq!(
        templates.templates[0]
            .template
            .vector("OS")
            .and_then(|o| o.get("ARCH")),
        Some("x86_64")
    );

    let vnets = VnetPool::from_xml(
        r#"<VNET_POOL><VNET><ID>3</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME><NAME>lan</NAME><CLUSTERS><ID>0</ID><ID>100</ID></CLUSTERS><BRIDGE>br0</BRIDGE><STATE>1</STATE><USED_LEASES>2</USED_LEASES><TEMPLATE><NETWORK_ADDRESS><![CDATA[172.16.0.0]]></NETWORK_ADDRESS><NETWORK_MASK><![CDATA[16]]></NETWORK_MASK></TEMPLATE><AR_POOL><AR><AR_ID><![CDATA[0]]></AR_ID><IP><![CDATA[172.16.0.10]]></IP><MAC>02:00</MAC><NEXT_INDEX>2</NEXT_INDEX><SIZE>50</SIZE><TYPE><![CDATA[IP4]]></TYPE></AR><AR><AR_ID>1</AR_ID><MAC>02:01</MAC><NEXT_INDEX>0</NEXT_INDEX><SIZE>10</SIZE><TYPE>ETHER</TYPE></AR></AR_POOL></VNET></VNET_POOL>"#,
    )
    .unwrap();
    let v: &VirtualNetwork = &vnets.vnets[0];
    assert_eq!(v.clusters, [0, 100]);
    assert_eq!(v.address_ranges.len(), 2);
    assert_eq!(v.address_ranges[1].ip, None);

    let hosts = HostPool::from_xml(
        r#"<HOST_POOL><HOST><ID>0</ID><NAME>node01</NAME><STATE>2</STATE><PREV_STATE>2</PREV_STATE><IM_MAD>kvm</IM_MAD><VM_MAD>kvm</VM_MAD><CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER></HOST><HOST><ID>1</ID><NAME>node02</NAME><STATE>8</STATE><CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER></HOST></HOST_POOL>"#,
    )
    .unwrap();
    assert!(hosts.hosts[0].accepts_vms());
    assert!(!hosts.hosts[1].accepts_vms(), "OFFLINE");

    let clusters = ClusterPool::from_xml(
        r#"<CLUSTER_POOL><CLUSTER><ID>0</ID><NAME>default</NAME><HOSTS><ID>0</ID><ID>1</ID></HOSTS><DATASTORES/><VNETS><ID>3</ID></VNETS><TEMPLATE/></CLUSTER></CLUSTER_POOL>"#,
    )
    .unwrap();
    assert_eq!(clusters.clusters[0].hosts, [0, 1]);

    let user = User::from_xml(
        "<USER><ID>2</ID><GID>1</GID><GROUPS><ID>1</ID></GROUPS><GNAME>users</GNAME><NAME>cms</NAME><PASSWORD>abc</PASSWORD><AUTH_DRIVER>core</AUTH_DRIVER><ENABLED>1</ENABLED><TEMPLATE><SSH_PUBLIC_KEY><![CDATA[ssh-ed25519 AAAA one\nssh-rsa BBBB two]]></SSH_PUBLIC_KEY></TEMPLATE></USER>",
    )
    .unwrap();
    assert_eq!(
        user.template
            .get("SSH_PUBLIC_KEY")
            .map(|k| k.lines().count()),
        Some(2)
    );
}

#[test]
fn malformed_documents_are_errors_not_panics() {
    for bad in [
        "",
        "<VM>",
        "<VM><ID>1</ID></VM>",
        "<VM><ID>x</ID><UID>1</UID></VM>",
        "<VM_POOL><VM><ID>1</ID></VM></VM_POOL>",
        "<IMAGE_POOL><VM/></IMAGE_POOL>",
    ] {
        assert!(
            Vm::from_xml(bad).is_err() || VmPool::from_xml(bad).is_err(),
            "{bad}"
        );
    }
    // A pool's VM that lacks what a VM needs is listed from what it has (its STATE
    // unread: -1, which maps to `unknown`); one odd VM does not fail the pool.
    let pool = VmPool::from_xml("<VM_POOL><VM><ID>1</ID></VM></VM_POOL>").unwrap();
    assert_eq!((pool.vms[0].id, pool.vms[0].state), (1, -1));
    assert!(ImagePool::from_xml("<IMAGE_POOL><IMAGE><ID>1</ID></IMAGE></IMAGE_POOL>").is_err());
    assert!(HostPool::from_xml("<HOST_POOL><HOST/></HOST_POOL>").is_err());
    assert!(User::from_xml("<USER/>").is_err());
}

/// A VM as OpenNebula 4.x writes it: no CDATA, history records without CID and with
/// the 4.x driver names (VMMMAD, TMMAD), the monitoring values beside the state, no
/// PREV_STATE.
const VM_4X: &str = "<VM><ID>7</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>\
<GNAME>oneadmin</GNAME><NAME>one-4</NAME><PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M>\
<OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U>\
<OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS><LAST_POLL>1400000100</LAST_POLL>\
<STATE>3</STATE><LCM_STATE>3</LCM_STATE><RESCHED>0</RESCHED><STIME>1400000000</STIME>\
<ETIME>0</ETIME><DEPLOY_ID>one-7</DEPLOY_ID><MEMORY>524288</MEMORY><CPU>1</CPU><NET_TX>0</NET_TX>\
<NET_RX>0</NET_RX><TEMPLATE><CPU>1</CPU><MEMORY>512</MEMORY><DISK><DISK_ID>0</DISK_ID>\
<IMAGE_ID>3</IMAGE_ID><SOURCE>/var/lib/one/datastores/1/abc</SOURCE></DISK><NIC><IP>10.0.0.7</IP>\
<MAC>02:00:0a:00:00:07</MAC><NETWORK>private</NETWORK><NETWORK_ID>0</NETWORK_ID></NIC>\
<TEMPLATE_ID>2</TEMPLATE_ID><VMID>7</VMID></TEMPLATE><USER_TEMPLATE/><HISTORY_RECORDS><HISTORY>\
<OID>7</OID><SEQ>0</SEQ><HOSTNAME>node01</HOSTNAME><HID>0</HID><STIME>1400000010</STIME>\
<ETIME>0</ETIME><VMMMAD>kvm</VMMMAD><VNMMAD>dummy</VNMMAD><TMMAD>shared</TMMAD>\
<DS_LOCATION>/var/lib/one/datastores</DS_LOCATION><DS_ID>0</DS_ID><PSTIME>1400000010</PSTIME>\
<PETIME>1400000020</PETIME><RSTIME>1400000020</RSTIME><RETIME>0</RETIME><ESTIME>0</ESTIME>\
<EETIME>0</EETIME><REASON>0</REASON><ACTION>0</ACTION></HISTORY></HISTORY_RECORDS></VM>";

/// A VM pool as OpenNebula 5.x writes it: CDATA in templates, CID in history, one VM
/// without TEMPLATE parts (no DISK, no NIC), one whose USER_TEMPLATE and history are
/// absent altogether, one in an LCM_STATE written by its name.
const POOL_5X: &str = "<VM_POOL>\
<VM><ID>20</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME><NAME>web</NAME>\
<LAST_POLL>0</LAST_POLL><STATE>3</STATE><LCM_STATE>3</LCM_STATE><PREV_STATE>3</PREV_STATE>\
<PREV_LCM_STATE>3</PREV_LCM_STATE><RESCHED>0</RESCHED><STIME>1500000000</STIME><ETIME>0</ETIME>\
<DEPLOY_ID>one-20</DEPLOY_ID><TEMPLATE><CPU><![CDATA[1]]></CPU><MEMORY><![CDATA[1024]]></MEMORY>\
<DISK><IMAGE_ID><![CDATA[4]]></IMAGE_ID></DISK><NIC><IP><![CDATA[10.1.0.20]]></IP>\
<NETWORK_ID><![CDATA[1]]></NETWORK_ID></NIC></TEMPLATE><USER_TEMPLATE><CMS_TAGS><![CDATA[{\"env\":\"prod\"}]]></CMS_TAGS></USER_TEMPLATE>\
<HISTORY_RECORDS><HISTORY><OID>20</OID><SEQ>0</SEQ><HOSTNAME>node01</HOSTNAME><HID>0</HID><CID>100</CID>\
<STIME>1500000001</STIME><ETIME>0</ETIME><VM_MAD><![CDATA[kvm]]></VM_MAD><TM_MAD><![CDATA[qcow2]]></TM_MAD>\
<DS_ID>0</DS_ID><ACTION>0</ACTION></HISTORY></HISTORY_RECORDS></VM>\
<VM><ID>21</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME><NAME>bare</NAME>\
<LAST_POLL>0</LAST_POLL><STATE>8</STATE><LCM_STATE>0</LCM_STATE><RESCHED>0</RESCHED>\
<STIME>1500000002</STIME><ETIME>0</ETIME><DEPLOY_ID/><TEMPLATE><CPU><![CDATA[1]]></CPU></TEMPLATE></VM>\
<VM><ID>22</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME><NAME>named</NAME>\
<STATE>3</STATE><LCM_STATE>RUNNING</LCM_STATE><TEMPLATE/><USER_TEMPLATE/></VM>\
</VM_POOL>";

#[test]
fn documents_of_older_versions_read() {
    fuzz_seed("opennebula_documents", "ok-vm-4", VM_4X.as_bytes());
    fuzz_seed("opennebula_documents", "ok-vm-pool-5", POOL_5X.as_bytes());
    let d = driver();
    let i = d.instance_of(&Vm::from_xml(VM_4X).unwrap());
    assert_eq!((i.id.as_str(), i.name.as_str()), ("7", "one-4"));
    assert_eq!(
        (i.state, i.raw_state.as_str()),
        (InstanceState::Running, "ACTIVE/RUNNING")
    );
    assert_eq!(i.private_ips, ["10.0.0.7"]);
    assert_eq!(i.network_ids, [NetworkId::new("0")]);
    assert_eq!(i.image_id.as_ref().map(|x| x.as_str()), Some("image:3"));
    assert_eq!(i.location_id, None, "no CID: the cluster is not known");
    assert_eq!(i.created_at.map(|t| t.timestamp()), Some(1_400_000_000));

    let pool = VmPool::from_xml(POOL_5X).unwrap();
    let i: Vec<_> = pool.vms.iter().map(|v| d.instance_of(v)).collect();
    assert_eq!(i.len(), 3, "no VM of the pool is lost");
    assert_eq!(i[0].location_id, Some(LocationId::new("100")));
    assert_eq!(i[0].tags["env"], "prod");
    assert_eq!(i[0].image_id.as_ref().map(|x| x.as_str()), Some("image:4"));
    assert_eq!(
        (i[1].state, i[1].raw_state.as_str()),
        (InstanceState::Stopped, "POWEROFF")
    );
    assert!(i[1].private_ips.is_empty() && i[1].image_id.is_none());
    // An LCM_STATE that is not a number cannot be decided on: the VM is listed, in
    // state unknown, rather than guessed or dropped.
    assert_eq!(
        (i[2].id.as_str(), i[2].state, i[2].raw_state.as_str()),
        ("22", InstanceState::Unknown, "3/RUNNING")
    );
}

/// A VM (one.vm.info, 7.0) in ACTIVE/`lcm` whose latest history ACTION is `action`,
/// with a root disk, a persistent disk being hot-plugged (ATTACH) and one made with it
/// to go with it, and two NICs in security groups.
fn vm_with_volumes(lcm: i64, action: i64) -> String {
    format!(
        r#"<VM><ID>7</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME><NAME>v</NAME>
<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>
<LAST_POLL>0</LAST_POLL><STATE>3</STATE><LCM_STATE>{lcm}</LCM_STATE><PREV_STATE>3</PREV_STATE><PREV_LCM_STATE>3</PREV_LCM_STATE><RESCHED>0</RESCHED><STIME>1</STIME><ETIME>0</ETIME><DEPLOY_ID>one-7</DEPLOY_ID><MONITORING/><SCHED_ACTIONS/>
<TEMPLATE>
<DISK><CLONE><![CDATA[YES]]></CLONE><DISK_ID><![CDATA[0]]></DISK_ID><IMAGE_ID><![CDATA[0]]></IMAGE_ID><TARGET><![CDATA[vda]]></TARGET></DISK>
<DISK><ATTACH><![CDATA[YES]]></ATTACH><CLONE><![CDATA[NO]]></CLONE><DISK_ID><![CDATA[2]]></DISK_ID><IMAGE_ID><![CDATA[21]]></IMAGE_ID><PERSISTENT><![CDATA[YES]]></PERSISTENT><TARGET><![CDATA[vdc]]></TARGET></DISK>
<DISK><CLONE><![CDATA[NO]]></CLONE><CMS_DELETE_ON_TERMINATION><![CDATA[YES]]></CMS_DELETE_ON_TERMINATION><DISK_ID><![CDATA[1]]></DISK_ID><IMAGE_ID><![CDATA[20]]></IMAGE_ID><PERSISTENT><![CDATA[YES]]></PERSISTENT><TARGET><![CDATA[vdb]]></TARGET></DISK>
<DISK><DISK_ID><![CDATA[3]]></DISK_ID><SIZE><![CDATA[1024]]></SIZE><TYPE><![CDATA[fs]]></TYPE></DISK>
<NIC><NETWORK_ID><![CDATA[0]]></NETWORK_ID><NIC_ID><![CDATA[0]]></NIC_ID><SECURITY_GROUPS><![CDATA[0,101]]></SECURITY_GROUPS></NIC>
<NIC><NETWORK_ID><![CDATA[1]]></NETWORK_ID><NIC_ID><![CDATA[1]]></NIC_ID><SECURITY_GROUPS><![CDATA[0,100]]></SECURITY_GROUPS></NIC>
<SECURITY_GROUP_RULE><PROTOCOL><![CDATA[ALL]]></PROTOCOL><RULE_TYPE><![CDATA[OUTBOUND]]></RULE_TYPE><SECURITY_GROUP_ID><![CDATA[0]]></SECURITY_GROUP_ID><SECURITY_GROUP_NAME><![CDATA[default]]></SECURITY_GROUP_NAME></SECURITY_GROUP_RULE>
<TM_MAD_SYSTEM><![CDATA[shared]]></TM_MAD_SYSTEM><VMID><![CDATA[7]]></VMID>
</TEMPLATE><USER_TEMPLATE/>
<HISTORY_RECORDS><HISTORY><OID>7</OID><SEQ>0</SEQ><HOSTNAME>h</HOSTNAME><HID>0</HID><CID>0</CID><STIME>1</STIME><ETIME>0</ETIME><VM_MAD>kvm</VM_MAD><TM_MAD>shared</TM_MAD><DS_ID>0</DS_ID><PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID><PSTIME>0</PSTIME><PETIME>0</PETIME><RSTIME>0</RSTIME><RETIME>0</RETIME><ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>{action}</ACTION><UID>2</UID><GID>1</GID><REQUEST_ID>-1</REQUEST_ID></HISTORY></HISTORY_RECORDS>
<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>"#
    )
}

#[test]
fn a_vm_shows_its_volumes_groups_and_hot_plugs() {
    let d = driver();
    let doc = vm_with_volumes(17, 21);
    fuzz_seed("opennebula_documents", "ok-vm-volumes", doc.as_bytes());
    let vm = Vm::from_xml(&doc).unwrap();
    let i = d.instance_of(&vm);
    // The root disk and the volatile disk are no volumes.
    let vols: Vec<(&str, Option<&str>, bool)> = i
        .volumes
        .iter()
        .map(|v| {
            (
                v.volume_id.as_str(),
                v.device.as_deref(),
                v.delete_on_termination,
            )
        })
        .collect();
    assert_eq!(
        vols,
        [("21", Some("vdc"), false), ("20", Some("vdb"), true)]
    );
    let groups: Vec<&str> = i.security_group_ids.iter().map(|g| g.as_str()).collect();
    assert_eq!(groups, ["0", "100", "101"]);
    assert_eq!(i.state, InstanceState::Running, "HOTPLUG runs");

    // Which way the disk moves: HOTPLUG with the latest action an attach (21) or a
    // detach (22); HOTPLUG_PROLOG_POWEROFF attaches, HOTPLUG_EPILOG_POWEROFF detaches.
    for (lcm, action, want) in [
        (17, 21, Some(Hotplug::Attach)),
        (17, 22, Some(Hotplug::Detach)),
        (33, 0, Some(Hotplug::Attach)),
        (34, 0, Some(Hotplug::Detach)),
        (3, 22, None),
    ] {
        let vm = Vm::from_xml(&vm_with_volumes(lcm, action)).unwrap();
        let u = disk_use(&vm, 21).unwrap();
        assert_eq!(u.hotplug, want, "LCM {lcm} ACTION {action}");
        assert_eq!((u.disk_id, u.target.as_deref()), (Some(2), Some("vdc")));
        // A disk without ATTACH is not moving, whatever the VM does.
        assert_eq!(disk_use(&vm, 20).unwrap().hotplug, None);
    }
    assert_eq!(disk_use(&vm, 99), None);
}

/// An IMAGE document as oned 7 writes it.
fn image_doc(
    id: i64,
    uname: &str,
    itype: i64,
    persistent: bool,
    state: i64,
    vms: &[i64],
    template: &str,
) -> String {
    format!(
        r#"<IMAGE><ID>{id}</ID><UID>2</UID><GID>1</GID><UNAME>{uname}</UNAME><GNAME>users</GNAME><NAME><![CDATA[img-{id}]]></NAME>
<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>
<TYPE>{itype}</TYPE><DISK_TYPE>0</DISK_TYPE><PERSISTENT>{p}</PERSISTENT><REGTIME>1700000000</REGTIME><MODTIME>1700000000</MODTIME><SOURCE>/var/lib/one/datastores/1/x</SOURCE><PATH/><FORMAT>raw</FORMAT><FS/><SIZE>1536</SIZE><STATE>{state}</STATE><PREV_STATE>1</PREV_STATE><RUNNING_VMS>{n}</RUNNING_VMS><CLONING_OPS>0</CLONING_OPS><CLONING_ID>-1</CLONING_ID><TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT><DATASTORE_ID>1</DATASTORE_ID><DATASTORE>default</DATASTORE>
<VMS>{vms}</VMS><CLONES/><APP_CLONES/><TEMPLATE>{template}</TEMPLATE>
<SNAPSHOTS><ALLOW_ORPHANS><![CDATA[NO]]></ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE><NEXT_SNAPSHOT>0</NEXT_SNAPSHOT></SNAPSHOTS><BACKUP_INCREMENTS/></IMAGE>"#,
        p = u8::from(persistent),
        n = vms.len(),
        vms = vms
            .iter()
            .map(|v| format!("<ID>{v}</ID>"))
            .collect::<String>(),
    )
}

#[test]
fn images_read_as_volumes_snapshots_and_images() {
    let d = driver();
    let cms = r#"<CMS_CLIENT_TOKEN><![CDATA[t-1]]></CMS_CLIENT_TOKEN><CMS_LOCATION><![CDATA[0]]></CMS_LOCATION><CMS_NAME><![CDATA[data: "a/b"]]></CMS_NAME><CMS_OWNER><![CDATA[team-a]]></CMS_OWNER><CMS_SNAPSHOT_ID><![CDATA[30]]></CMS_SNAPSHOT_ID><CMS_TAGS><![CDATA[{"env":"prod"}]]></CMS_TAGS><DEV_PREFIX><![CDATA[vd]]></DEV_PREFIX>"#;
    let doc = image_doc(20, "cms", 2, true, 8, &[7], cms);
    fuzz_seed("opennebula_documents", "ok-image-volume", doc.as_bytes());
    let img = Image::from_xml(&doc).unwrap();
    assert_eq!(
        (img.vms.as_slice(), img.running_vms, img.datastore_id),
        (&[7][..], 1, 1)
    );
    let vm = Vm::from_xml(&vm_with_volumes(3, 21)).unwrap();
    let uses = [disk_use(&vm, 20).unwrap()];
    let v = d.volume_of(&img, &uses, Some(LocationId::new("0")));
    assert_eq!(v.id.as_str(), "20");
    assert_eq!(v.name, r#"data: "a/b""#, "the cms name, not the image NAME");
    assert_eq!(
        (v.size_gib, v.state, v.raw_state.as_str()),
        (2, VolumeState::InUse, "USED_PERS")
    );
    assert_eq!(v.attachments.len(), 1);
    assert_eq!(v.attachments[0].device.as_deref(), Some("vdb"));
    assert!(v.attachments[0].delete_on_termination);
    assert_eq!(v.owner.as_deref(), Some("team-a"));
    assert_eq!(v.client_token.as_deref(), Some("t-1"));
    assert_eq!(v.snapshot_id.as_ref().map(|s| s.as_str()), Some("30"));
    assert_eq!(v.tags["env"], "prod");
    assert!(v.created_at.is_some());

    // Hot-plugged the other way.
    let detaching = Vm::from_xml(&vm_with_volumes(17, 22)).unwrap();
    let img21 = Image::from_xml(&image_doc(21, "cms", 2, true, 8, &[7], "")).unwrap();
    let v = d.volume_of(&img21, &[disk_use(&detaching, 21).unwrap()], None);
    assert_eq!(
        (v.state, v.raw_state.as_str()),
        (VolumeState::Detaching, "USED_PERS/HOTPLUG")
    );
    assert_eq!(v.name, "img-21", "without CMS_NAME, the image NAME");

    // A snapshot: a non-persistent DATABLOCK.
    let snap = Image::from_xml(&image_doc(
        30,
        "cms",
        2,
        false,
        4,
        &[],
        r#"<CMS_NAME><![CDATA[nightly]]></CMS_NAME><CMS_VOLUME_ID><![CDATA[20]]></CMS_VOLUME_ID><DESCRIPTION><![CDATA[before <upgrade>]]></DESCRIPTION>"#,
    ))
    .unwrap();
    let s = d.snapshot_of(&snap);
    assert_eq!(
        (s.state, s.progress, s.raw_state.as_str()),
        (SnapshotState::Pending, 0, "LOCKED")
    );
    assert_eq!(s.volume_id.as_ref().map(|v| v.as_str()), Some("20"));
    assert_eq!(s.description.as_deref(), Some("before <upgrade>"));
    assert_eq!(s.size_gib, 2);

    // An OS image: the user's own is not shared and shows its owner and source VM; the
    // catalogue's is shared and shows no owner even with one written.
    let own = Image::from_xml(&image_doc(
        40,
        "cms",
        0,
        false,
        1,
        &[],
        r#"<CMS_OWNER><![CDATA[team-a]]></CMS_OWNER><SAVED_VM_ID><![CDATA[7]]></SAVED_VM_ID>"#,
    ))
    .unwrap();
    let i = d.image_of_disk(&own);
    assert!(!i.shared);
    assert_eq!(i.owner.as_deref(), Some("team-a"));
    assert_eq!(i.source_instance_id.as_ref().map(|v| v.as_str()), Some("7"));
    assert_eq!(i.state, ImageState::Available);
    let theirs = Image::from_xml(&image_doc(
        41,
        "oneadmin",
        0,
        false,
        4,
        &[],
        r#"<CMS_OWNER><![CDATA[team-a]]></CMS_OWNER>"#,
    ))
    .unwrap();
    let i = d.image_of_disk(&theirs);
    assert!(i.shared);
    assert_eq!((i.owner, i.state), (None, ImageState::Pending));
}

#[test]
fn security_groups_read_as_oned_writes_them() {
    // Template attributes in name order, each RULE's attributes in name order, as
    // oned's Template::to_xml writes them; rules made outside cms too.
    let doc = r#"<SECURITY_GROUP><ID>101</ID><UID>2</UID><GID>1</GID><UNAME>cms</UNAME><GNAME>users</GNAME><NAME>web</NAME>
<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>
<UPDATED_VMS><ID>7</ID></UPDATED_VMS><OUTDATED_VMS><ID>8</ID></OUTDATED_VMS><UPDATING_VMS/><ERROR_VMS/>
<TEMPLATE>
<CMS_OWNER><![CDATA[team-a]]></CMS_OWNER><CMS_TAGS><![CDATA[{"env":"prod"}]]></CMS_TAGS><DESCRIPTION><![CDATA[web <tier>]]></DESCRIPTION>
<RULE><PROTOCOL><![CDATA[TCP]]></PROTOCOL><RANGE><![CDATA[22]]></RANGE><RULE_TYPE><![CDATA[inbound]]></RULE_TYPE></RULE>
<RULE><IP><![CDATA[10.0.0.4]]></IP><PROTOCOL><![CDATA[UDP]]></PROTOCOL><RANGE><![CDATA[53,1000:2000]]></RANGE><RULE_TYPE><![CDATA[INBOUND]]></RULE_TYPE><SIZE><![CDATA[4]]></SIZE></RULE>
<RULE><ICMP_TYPE><![CDATA[8]]></ICMP_TYPE><PROTOCOL><![CDATA[ICMP]]></PROTOCOL><RULE_TYPE><![CDATA[INBOUND]]></RULE_TYPE></RULE>
<RULE><PROTOCOL><![CDATA[ALL]]></PROTOCOL><RULE_TYPE><![CDATA[OUTBOUND]]></RULE_TYPE></RULE>
<RULE><NETWORK_ID><![CDATA[3]]></NETWORK_ID><PROTOCOL><![CDATA[TCP]]></PROTOCOL><RULE_TYPE><![CDATA[INBOUND]]></RULE_TYPE></RULE>
<RULE><PROTOCOL><![CDATA[IPSEC]]></PROTOCOL><RULE_TYPE><![CDATA[INBOUND]]></RULE_TYPE></RULE>
<RULE><PROTOCOL><![CDATA[TCP]]></PROTOCOL><RANGE><![CDATA[22]]></RANGE><RULE_TYPE><![CDATA[INBOUND]]></RULE_TYPE></RULE>
</TEMPLATE></SECURITY_GROUP>"#;
    fuzz_seed("opennebula_documents", "ok-secgroup-rules", doc.as_bytes());
    let g = SecurityGroup::from_xml(doc).unwrap();
    assert_eq!(g.vms, [7, 8], "every VM in the group, up to date or not");
    let view = driver().security_group_of(&g);
    assert_eq!((view.id.as_str(), view.name.as_str()), ("101", "web"));
    assert_eq!(view.description, "web <tier>");
    assert!(!view.is_default);
    assert_eq!(view.owner.as_deref(), Some("team-a"));
    assert_eq!(view.tags["env"], "prod");
    let cidr = |c: &str| RulePeer::Cidr(c.into());
    let ports = |p: RuleProtocol, a: u16, b: u16, c: &str| SecurityRule {
        direction: RuleDirection::Ingress,
        protocol: p,
        from_port: Some(a),
        to_port: Some(b),
        peer: cidr(c),
    };
    let mut want = vec![
        ports(RuleProtocol::Tcp, 22, 22, "0.0.0.0/0"),
        ports(RuleProtocol::Udp, 53, 53, "10.0.0.4/30"),
        ports(RuleProtocol::Udp, 1000, 2000, "10.0.0.4/30"),
        SecurityRule {
            protocol: RuleProtocol::Icmp,
            from_port: Some(8),
            to_port: None,
            ..ports(RuleProtocol::Tcp, 0, 0, "0.0.0.0/0")
        },
        SecurityRule::all(RuleDirection::Egress, cidr("0.0.0.0/0")),
    ];
    want.sort();
    // Held once (the repeated TCP 22), the network and IPSEC rules left out.
    assert_eq!(view.rules, want);

    let pool = SecurityGroupPool::from_xml(&format!(
        "<SECURITY_GROUP_POOL>{doc}<SECURITY_GROUP><ID>0</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>default</NAME><UPDATED_VMS/><OUTDATED_VMS/><UPDATING_VMS/><ERROR_VMS/><TEMPLATE><CMS_OWNER>x</CMS_OWNER><RULE><PROTOCOL>ALL</PROTOCOL><RULE_TYPE>INBOUND</RULE_TYPE></RULE></TEMPLATE></SECURITY_GROUP></SECURITY_GROUP_POOL>"
    ))
    .unwrap();
    let default = driver().security_group_of(&pool.groups[1]);
    assert!(default.is_default);
    assert_eq!(default.owner, None, "another user's group shows no owner");
    assert!(SecurityGroup::from_xml("<SECURITY_GROUP><ID>1</ID></SECURITY_GROUP>").is_err());
}
