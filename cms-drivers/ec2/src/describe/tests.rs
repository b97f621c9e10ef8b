//! The driver's reader against the SDK's, on the same bytes: documents with every
//! quirk of the SDK's reading, answers written from the EC2 API model (botocore's),
//! moto's answers, and the driver's listing end to end through a canned endpoint.

use std::path::Path;

use aws_sdk_ec2::config::ConfigBag;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use cms_core::{Instance, InstanceState};

use super::{read, sdk_layer};

type Listing = (Vec<Instance>, Option<String>);

/// What the SDK's own reader makes of a 200 answer, mapped as the driver maps it.
fn sdk(xml: &str) -> Result<Listing, String> {
    let response = HttpResponse::new(
        StatusCode::try_from(200u16).expect("status"),
        SdkBody::from(xml.as_bytes().to_vec()),
    );
    let out = sdk_layer()
        .load::<SharedResponseDeserializer>()
        .expect("the SDK's reader")
        .deserialize_nonstreaming_with_config(&response, &ConfigBag::base())
        .map_err(|e| format!("{e:?}"))?;
    let out = out
        .downcast::<DescribeInstancesOutput>()
        .map_err(|_| "not a DescribeInstancesOutput".to_owned())?;
    let items = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(crate::model::instance)
        .collect();
    Ok((items, out.next_token().map(str::to_owned)))
}

fn ours(xml: &str) -> Result<Listing, String> {
    read(xml.as_bytes())
        .map(|a| (a.instances, a.next_token))
        .map_err(|e| format!("{e:?}"))
}

/// Both readers read `xml` alike; answers what they read.
#[track_caller]
fn same(xml: &str) -> Listing {
    let want = sdk(xml).unwrap_or_else(|e| panic!("the SDK cannot read it ({e}):\n{xml}"));
    let got = ours(xml).unwrap_or_else(|e| panic!("the driver cannot read it ({e}):\n{xml}"));
    assert_eq!(got, want, "the readers differ on:\n{xml}");
    got
}

fn doc(instances: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse \
         xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId>\
         <reservationSet><item><reservationId>r-1</reservationId><instancesSet>{instances}\
         </instancesSet></item></reservationSet></DescribeInstancesResponse>"
    )
}

#[test]
fn reads_a_whole_instance() {
    let (items, next) = same(&doc(
        "<item><instanceId>i-1</instanceId><imageId>ami-1</imageId>\
         <instanceState><code>16</code><name>running</name></instanceState>\
         <instanceType>t3.micro</instanceType><keyName>k</keyName>\
         <launchTime>2026-12-02T06:09:35.000Z</launchTime>\
         <placement><availabilityZone>us-east-1a</availabilityZone></placement>\
         <subnetId>subnet-1</subnetId><privateIpAddress>10.0.0.5</privateIpAddress>\
         <ipAddress>54.0.0.1</ipAddress><clientToken>tok</clientToken>\
         <tagSet><item><key>Name</key><value>web</value></item>\
         <item><key>env</key><value>prod</value></item>\
         <item><key>cms:owner</key><value>alice</value></item></tagSet>\
         <networkInterfaceSet><item><subnetId>subnet-2</subnetId>\
         <privateIpAddress>10.0.1.5</privateIpAddress><privateIpAddressesSet>\
         <item><privateIpAddress>10.0.1.5</privateIpAddress><association>\
         <publicIp>54.0.0.2</publicIp></association></item>\
         <item><privateIpAddress>10.0.1.6</privateIpAddress></item>\
         </privateIpAddressesSet><groupSet><item><groupId>sg-nic</groupId></item></groupSet>\
         </item></networkInterfaceSet>\
         <groupSet><item><groupId>sg-1</groupId><groupName>web</groupName></item>\
         <item><groupName>no id</groupName></item><item><groupId>sg-2</groupId></item>\
         <item><groupId>sg-1</groupId></item></groupSet>\
         <blockDeviceMapping><item><deviceName>/dev/sda1</deviceName><ebs>\
         <volumeId>vol-root</volumeId><status>attached</status>\
         <deleteOnTermination>true</deleteOnTermination></ebs></item>\
         <item><deviceName>/dev/sdf</deviceName><ebs><volumeId>vol-data</volumeId>\
         <deleteOnTermination>false</deleteOnTermination></ebs></item>\
         <item><deviceName>/dev/sdg</deviceName></item></blockDeviceMapping></item>",
    ));
    assert_eq!(next, None);
    let vm = &items[0];
    assert_eq!(vm.id.as_str(), "i-1");
    assert_eq!(vm.name, "web");
    assert_eq!(vm.state, InstanceState::Running);
    assert_eq!(vm.owner.as_deref(), Some("alice"));
    assert_eq!(vm.tags.len(), 1);
    assert_eq!(
        vm.network_ids
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>(),
        ["subnet-1", "subnet-2"]
    );
    assert_eq!(vm.private_ips, ["10.0.0.5", "10.0.1.5", "10.0.1.6"]);
    assert_eq!(vm.public_ips, ["54.0.0.1", "54.0.0.2"]);
    assert!(vm.created_at.is_some());
    // The instance's own groups, not its interface's; each once.
    assert_eq!(
        vm.security_group_ids
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>(),
        ["sg-1", "sg-2"]
    );
    // EBS volumes, with their devices; a mapping without a volume is none.
    assert_eq!(
        vm.volumes
            .iter()
            .map(|v| (
                v.volume_id.as_str(),
                v.device.as_deref(),
                v.delete_on_termination
            ))
            .collect::<Vec<_>>(),
        [
            ("vol-root", Some("/dev/sda1"), true),
            ("vol-data", Some("/dev/sdf"), false)
        ]
    );
}

#[test]
fn reads_groups_and_volumes_as_the_sdk_does() {
    // A second `ebs` replaces the first whole; a second list replaces the first; an
    // `ebs` without `deleteOnTermination`; empty lists and elements.
    let (items, _) = same(&doc(
        "<item><instanceId>i-1</instanceId>\
         <groupSet><item><groupId>sg-old</groupId></item></groupSet>\
         <groupSet><item><groupId>sg-new</groupId><groupId>sg-newer</groupId></item></groupSet>\
         <blockDeviceMapping><item><deviceName>/dev/sdf</deviceName>\
         <ebs><volumeId>vol-1</volumeId><deleteOnTermination>true</deleteOnTermination></ebs>\
         <ebs><volumeId>vol-2</volumeId></ebs></item>\
         <item><ebs><volumeId>vol-3</volumeId><deleteOnTermination>false</deleteOnTermination>\
         <deleteOnTermination>true</deleteOnTermination></ebs><deviceName/></item>\
         <item><ebs/></item><item/></blockDeviceMapping></item>\
         <item><instanceId>i-2</instanceId><groupSet/><blockDeviceMapping/></item>\
         <item><instanceId>i-3</instanceId><groupSet><item/></groupSet>\
         <blockDeviceMapping><item><ebs><volumeId></volumeId></ebs></item></blockDeviceMapping></item>",
    ));
    let ids: Vec<&str> = items[0]
        .security_group_ids
        .iter()
        .map(|g| g.as_str())
        .collect();
    assert_eq!(ids, ["sg-newer"]);
    let volumes: Vec<(&str, Option<&str>, bool)> = items[0]
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
        volumes,
        [("vol-2", Some("/dev/sdf"), false), ("vol-3", None, true)]
    );
    assert!(items[1].security_group_ids.is_empty() && items[1].volumes.is_empty());
    assert!(items[2].security_group_ids.is_empty() && items[2].volumes.is_empty());
}

#[test]
fn reads_text_as_the_sdk_does() {
    for value in [
        // Entities and character references.
        "a&amp;b&lt;c&gt;&quot;d&quot;&apos;e&apos;",
        "&#x41;&#66;&#x1D11E;",
        "&amp;",
        // CDATA and comments before the text are passed over; what follows the
        // first run of text is ignored.
        "<![CDATA[cdata]]>after",
        "<!-- c -->after",
        "first<!-- c -->second",
        "first<![CDATA[x]]>",
        "<?pi x?>after",
        "first<child>x</child>rest",
        "first<child/>",
        // Empty, whitespace, line ends kept as written.
        "",
        "  ",
        "two\r\nlines\n",
        "ünïcödé ☃",
    ] {
        let xml = doc(&format!(
            "<item><instanceId>i-1</instanceId><keyName>{value}</keyName>\
             <tagSet><item><key>k</key><value>{value}</value></item></tagSet></item>"
        ));
        same(&xml);
    }
    // Elements without content, written both ways.
    same(&doc(
        "<item><instanceId>i-2</instanceId><keyName/><imageId></imageId>\
         <placement/><tagSet/><networkInterfaceSet/><instanceState/></item>",
    ));
}

#[test]
fn reads_structure_as_the_sdk_does() {
    // Namespace prefixes, a field given twice (the last one counts), unknown
    // elements and attributes, members that are not `item`, nesting that reuses
    // names the reader knows (a `name` outside the state, an `instanceId` in an
    // unknown element).
    let (items, _) = same(
        "<?xml version=\"1.0\"?><ec2:DescribeInstancesResponse xmlns:ec2=\"urn:x\">\
         <ec2:reservationSet><ec2:item><ec2:instancesSet>\
         <ec2:item a=\"1\"><ec2:instanceId>i-old</ec2:instanceId>\
         <ec2:instanceId>i-1</ec2:instanceId><ec2:name>not the state</ec2:name>\
         <ec2:unknown><ec2:instanceId>i-inner</ec2:instanceId></ec2:unknown>\
         <ec2:instanceState><ec2:code>80</ec2:code></ec2:instanceState>\
         <ec2:instanceState><ec2:name>stopped</ec2:name></ec2:instanceState>\
         <ec2:tagSet><ec2:item><ec2:key>a</ec2:key></ec2:item>\
         <ec2:member><ec2:key>b</ec2:key><ec2:value>no</ec2:value></ec2:member></ec2:tagSet>\
         <ec2:tagSet><ec2:item><ec2:key>c</ec2:key><ec2:value>3</ec2:value></ec2:item></ec2:tagSet>\
         </ec2:item><ec2:item><ec2:imageId>no id</ec2:imageId></ec2:item><ec2:item/>\
         </ec2:instancesSet></ec2:item></ec2:reservationSet>\
         <ec2:nextToken>t1</ec2:nextToken><ec2:nextToken>t2</ec2:nextToken>\
         </ec2:DescribeInstancesResponse>",
    );
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id.as_str(), "i-1");
    assert_eq!(items[0].raw_state, "stopped");
    // A second instancesSet in a reservation, and a second reservationSet, replace
    // the first; state codes with high bits; an empty answer.
    same(&doc(
        "<item><instanceId>i-1</instanceId></item></instancesSet>\
         <instancesSet><item><instanceId>i-2</instanceId>\
         <instanceState><code>272</code><name>running</name></instanceState></item>",
    ));
    same(
        "<DescribeInstancesResponse><reservationSet><item><instancesSet><item>\
         <instanceId>i-1</instanceId></item></instancesSet></item></reservationSet>\
         <reservationSet><item><instancesSet><item><instanceId>i-2</instanceId></item>\
         </instancesSet></item></reservationSet></DescribeInstancesResponse>",
    );
    same("<DescribeInstancesResponse/>");
    same("<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>");
}

#[test]
fn leaves_to_the_sdk_what_it_cannot_read() {
    for xml in [
        doc("<item><instanceId>i-1</instanceId><instanceState><code>x</code></instanceState></item>"),
        doc("<item><instanceId>i-1</instanceId><launchTime>yesterday</launchTime></item>"),
        doc("<item><instanceId>i-1</instanceId><keyName>&nbsp;</keyName></item>"),
        doc(
            "<item><instanceId>i-1</instanceId><blockDeviceMapping><item><ebs>\
             <deleteOnTermination>maybe</deleteOnTermination></ebs></item></blockDeviceMapping></item>",
        ),
        doc(
            "<item><instanceId>i-1</instanceId><blockDeviceMapping><item><ebs>\
             <deleteOnTermination/></ebs></item></blockDeviceMapping></item>",
        ),
        doc("<item><instanceId><b>i-1</b></instanceId></item>"),
        "<DescribeImagesResponse/>".to_owned(),
        "not XML".to_owned(),
    ] {
        assert!(ours(&xml).is_err(), "the driver read:\n{xml}");
        assert!(sdk(&xml).is_err(), "the SDK read:\n{xml}");
    }
    // An answer cut short: the SDK lists what came before the cut; the driver's
    // reader refuses it (and the driver does not hand it to the SDK).
    let whole =
        doc("<item><instanceId>i-1</instanceId></item><item><instanceId>i-2</instanceId></item>");
    let cut = &whole[..whole.find("<item><instanceId>i-2").expect("second") + 10];
    assert_eq!(sdk(cut).expect("the SDK takes it").0.len(), 1);
    assert!(matches!(
        read(cut.as_bytes()),
        Err(super::Unreadable::Malformed(_))
    ));
    let cut = &whole[..whole.find("<item><instanceId>i-2").expect("second") + 6];
    assert_eq!(sdk(cut).expect("the SDK takes it").0.len(), 1);
    assert_eq!(
        read(cut.as_bytes()).map(|_| ()),
        Err(super::Unreadable::Malformed(super::CUT_SHORT.into()))
    );
    // Not well-formed: an end tag that does not match.
    let bad = doc("<item><instanceId>i-1</instanceid></item>");
    assert!(matches!(
        read(bad.as_bytes()),
        Err(super::Unreadable::Malformed(_))
    ));
    // Not UTF-8.
    assert!(read(b"<DescribeInstancesResponse>\xff</DescribeInstancesResponse>").is_err());
}

/// The answer cut short anywhere before its end, and with bytes replaced at random
/// (a seeded xorshift: the same damage each run): the reader never panics, and an
/// answer cut short is an error, never a shorter listing.
fn never_panics_when_damaged(xml: &str) {
    let bytes = xml.as_bytes();
    // Cut anywhere before the root element's last `>`.
    let end = xml.trim_end().len() - 1;
    let read_bytes = |b: &[u8]| {
        std::panic::catch_unwind(|| read(b).map(|a| a.instances.len()))
            .unwrap_or_else(|_| panic!("the reader panics on:\n{}", String::from_utf8_lossy(b)))
    };
    for cut in (0..end).step_by(end / 40 + 1) {
        let r = read_bytes(&bytes[..cut]);
        assert!(
            r.is_err(),
            "an answer cut at byte {cut} is read as a listing: {r:?}"
        );
    }
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ bytes.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const NASTY: &[u8] = b"<>&;/\"'=!?[]\0\xff\xc3 x9-";
    for _ in 0..40 {
        let mut damaged = bytes.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() % damaged.len() as u64) as usize;
            damaged[at] = NASTY[(next() % NASTY.len() as u64) as usize];
        }
        let _ = read_bytes(&damaged);
    }
}

#[test]
fn damaged_answers_are_errors_or_readings_never_panics() {
    let xml = doc(
        "<item><instanceId>i-1</instanceId><instanceState><code>16</code>\
        <name>running</name></instanceState><tagSet><item><key>Name</key><value>a &amp; b\
        </value></item></tagSet><privateIpAddress>10.0.0.1</privateIpAddress></item>\
        <item><instanceId>i-2</instanceId></item>",
    );
    same(&xml);
    never_panics_when_damaged(&xml);
}

#[test]
fn passes_over_malformed_fields_it_does_not_read() {
    // The SDK fails the whole answer on a malformed field cms does not use; the
    // driver's reader lists the instance.
    let xml = doc("<item><instanceId>i-1</instanceId><ebsOptimized>maybe</ebsOptimized></item>");
    assert!(sdk(&xml).is_err());
    let (items, _) = ours(&xml).expect("read");
    assert_eq!(items[0].id.as_str(), "i-1");
}

#[cfg(feature = "moto")]
#[tokio::test]
async fn reads_answers_written_from_the_ec2_model_as_the_sdk_does() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model_answers.py");
    let python = crate::moto::python_env().await.join("bin").join("python");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .arg("60")
        .output()
        .await
        .expect("run the model's answer writer");
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(docs.len(), 60);
    let mut instances = 0;
    let mut with_token = 0;
    let mut with_groups = 0;
    let mut with_volumes = 0;
    for d in &docs {
        let body = d["body"].as_str().expect("body");
        let (items, next) = same(body);
        never_panics_when_damaged(body);
        // botocore read these instance ids too.
        assert_eq!(Some(items.len() as u64), d["instances"].as_u64(), "{body}");
        instances += items.len();
        with_token += usize::from(next.is_some());
        with_groups += items
            .iter()
            .filter(|i| !i.security_group_ids.is_empty())
            .count();
        with_volumes += items.iter().filter(|i| !i.volumes.is_empty()).count();
    }
    assert!(instances > 60, "only {instances} instances in all");
    assert!(with_token > 0);
    // The answers exercise every field the driver reads, groups and volumes too.
    assert!(
        with_groups > 10 && with_volumes > 10,
        "{with_groups} {with_volumes}"
    );
}

#[cfg(feature = "moto")]
mod against_moto {
    use cms_core::{Driver, ErrorKind, InstanceFilter, PageRequest};

    use super::{same, sdk};
    use crate::canned::{record, CannedEc2};
    use crate::moto::{MotoServer, FLAVOR, IMAGE_ID};
    use crate::Ec2Driver;
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

    fn tags(pairs: &[(&str, &str)]) -> TagSpecification {
        let mut t = TagSpecification::builder().resource_type(ResourceType::Instance);
        for (k, v) in pairs {
            t = t.tags(Tag::builder().key(*k).value(*v).build());
        }
        t.build()
    }

    /// moto's answers, as moto wrote them, read alike by both readers; then the
    /// driver's listing through a canned endpoint serving those bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_motos_answers_as_the_sdk_does() {
        let moto = MotoServer::start().await;
        let d = Ec2Driver::new(moto.config()).await.expect("driver");
        let ec2 = d.client();
        ec2.create_key_pair()
            .key_name("bench-key")
            .send()
            .await
            .expect("key pair");
        let run = |n: i32, t: TagSpecification| {
            ec2.run_instances()
                .image_id(IMAGE_ID)
                .instance_type(FLAVOR.into())
                .min_count(n)
                .max_count(n)
                .tag_specifications(t)
        };
        run(
            3,
            tags(&[("Name", "web <1> & \"a\""), ("env", ""), ("ünï", "cödé ☃")]),
        )
        .key_name("bench-key")
        .client_token("token-1")
        .send()
        .await
        .expect("run");
        // Two in a security group, with a volume made with them.
        let sg = ec2
            .create_security_group()
            .group_name("db")
            .description("db")
            .send()
            .await
            .expect("group");
        let two = run(2, tags(&[("Name", "db")]))
            .set_security_group_ids(sg.group_id().map(|g| vec![g.to_owned()]))
            .block_device_mappings(
                aws_sdk_ec2::types::BlockDeviceMapping::builder()
                    .device_name("/dev/sdf")
                    .ebs(
                        aws_sdk_ec2::types::EbsBlockDevice::builder()
                            .volume_size(2)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("run");
        let ids: Vec<String> = two
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        ec2.stop_instances()
            .instance_ids(&ids[0])
            .send()
            .await
            .expect("stop");
        ec2.terminate_instances()
            .instance_ids(&ids[1])
            .send()
            .await
            .expect("terminate");
        // An elastic address on one instance, a second interface on another.
        let eip = ec2.allocate_address().send().await.expect("address");
        ec2.associate_address()
            .instance_id(&ids[0])
            .set_allocation_id(eip.allocation_id().map(str::to_owned))
            .send()
            .await
            .expect("associate");
        let first = ec2
            .describe_instances()
            .instance_ids(&ids[0])
            .send()
            .await
            .expect("describe");
        let subnet = first.reservations()[0].instances()[0]
            .subnet_id()
            .expect("subnet")
            .to_owned();
        let eni = ec2
            .create_network_interface()
            .subnet_id(&subnet)
            .send()
            .await
            .expect("interface");
        ec2.attach_network_interface()
            .instance_id(&ids[0])
            .device_index(1)
            .set_network_interface_id(
                eni.network_interface()
                    .and_then(|n| n.network_interface_id())
                    .map(str::to_owned),
            )
            .send()
            .await
            .expect("attach");

        let form = "Action=DescribeInstances&Version=2016-11-15";
        let (status, all) = record(moto.endpoint(), form).await.expect("record");
        assert_eq!(status, 200);
        let all = String::from_utf8(all).expect("UTF-8");
        let (items, _) = same(&all);
        assert_eq!(items.len(), 5);
        let vm = items
            .iter()
            .find(|i| i.id.as_str() == ids[0])
            .expect("stopped one");
        assert!(
            vm.public_ips.len() == 1 && vm.private_ips.len() >= 2,
            "{vm:?}"
        );
        assert_eq!(vm.security_group_ids.len(), 1, "{vm:?}");
        assert!(
            vm.volumes
                .iter()
                .any(|v| v.device.as_deref() == Some("/dev/sdf") && v.delete_on_termination),
            "{vm:?}"
        );
        // The others have moto's root volume, and no group (moto puts an instance
        // that names none in none; EC2 in the VPC's default group).
        assert!(items
            .iter()
            .filter(|i| i.id.as_str() != ids[0] && i.id.as_str() != ids[1])
            .all(|i| i.security_group_ids.is_empty() && i.volumes.len() == 1));
        let (status, paged) = record(moto.endpoint(), &format!("{form}&MaxResults=5"))
            .await
            .expect("record");
        assert_eq!(status, 200);
        same(&String::from_utf8(paged).expect("UTF-8"));

        // The driver's listing over those bytes: what the SDK path lists.
        let canned = CannedEc2::start([("DescribeInstances", all.clone().into_bytes())]).await;
        let fast = Ec2Driver::new(canned.config()).await.expect("driver");
        let page = fast
            .list_instances(&InstanceFilter::default(), &PageRequest::first(1000))
            .await
            .expect("list");
        assert_eq!(page.items, sdk(&all).expect("SDK").0);
        // A state filter applies to what the driver read.
        let running = InstanceFilter {
            states: vec![cms_core::InstanceState::Running],
            ..Default::default()
        };
        let page = fast
            .list_instances(&running, &PageRequest::first(1000))
            .await
            .expect("list");
        assert_eq!(page.items.len(), 3);
    }

    /// The error of a listing over a canned endpoint serving `answers`.
    async fn listing_error(answers: Vec<(&str, String)>) -> cms_core::Error {
        let canned = CannedEc2::start(answers.into_iter().map(|(a, b)| (a, b.into_bytes()))).await;
        let d = Ec2Driver::new(canned.config()).await.expect("driver");
        d.list_instances(&InstanceFilter::default(), &PageRequest::first(10))
            .await
            .expect_err("an error")
    }

    /// What the driver's reader cannot read goes to the SDK's, and so do errors; a
    /// document that is not well-formed is an error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leaves_errors_and_unreadable_answers_to_the_sdk() {
        let bad = super::doc(
            "<item><instanceId>i-1</instanceId><instanceState><code>x</code></instanceState></item>",
        );
        // Read by the SDK, which cannot read it either.
        let e = listing_error(vec![("DescribeInstances", bad)]).await;
        assert_eq!(e.kind(), ErrorKind::Backend, "{e:?}");
        assert!(
            e.to_string().contains("cannot be read") && e.to_string().contains("integer"),
            "{e}"
        );

        // Cut short: an error, not the instances before the cut.
        let whole = super::doc(
            "<item><instanceId>i-1</instanceId></item><item><instanceId>i-2</instanceId></item>",
        );
        let cut = whole[..whole.find("<item><instanceId>i-2").expect("second") + 10].to_owned();
        let e = listing_error(vec![("DescribeInstances", cut)]).await;
        assert_eq!(e.kind(), ErrorKind::Backend, "{e:?}");
        assert!(e.to_string().contains("not well-formed"), "{e}");

        // An error answer.
        let e = listing_error(Vec::new()).await;
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
        assert_eq!(e.context_value("ec2_code"), Some("InvalidAction"), "{e:?}");
    }
}
