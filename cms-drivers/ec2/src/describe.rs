//! The driver's own reader of `DescribeInstances` answers, the listing's hot path.
//!
//! The SDK reads a `DescribeInstances` answer into its full `Instance` shape (about 60
//! fields, a dozen nested structures, each value its own `String`), which the driver
//! then maps to a cms [`Instance`] from a handful of them. This module reads those few
//! fields straight from the XML with quick-xml, borrowing text from the answer, and
//! skips everything else; the SDK still signs and sends the request, retries, times
//! out, and reads every error answer.
//!
//! It reads as the SDK reads (`aws-smithy-xml`): elements are matched by local name,
//! whatever their prefix; a value is the first run of text in its element (entities
//! `&lt; &gt; &amp; &quot; &apos;` and numeric references decoded, CDATA sections and
//! comments before it passed over, what follows it ignored), an empty element is the
//! empty string; a field given twice keeps the last; list members are the `item`
//! children; unknown elements are skipped. The state code and the launch time are
//! parsed by the SDK's own functions. [`Fields::of`] gives the same view of an
//! SDK-read instance, and both go through one mapping ([`crate::model::instance_from`]),
//! so the two paths cannot map differently; the tests compare them on moto's answers
//! and on answers written from the EC2 API model, every optional field present or
//! left out.
//!
//! One difference is on purpose: the SDK fails a whole answer when any field is
//! malformed, even one cms never reads (an `ebsOptimized` that is not a boolean);
//! this reader does not look at those. What this reader cannot read (a document that
//! is in another root element, a state code that is not a number, a launch time that
//! is not a timestamp, a `deleteOnTermination` that is not a boolean) is handed to the SDK's reader, which then
//! gives its own answer or error; but a document that is not well-formed XML is an
//! error here: the SDK's reader takes one cut short (ending inside an element) and
//! lists the instances before the cut as if they were all.

use std::borrow::Cow;

use aws_sdk_ec2::operation::describe_instances::{
    DescribeInstances, DescribeInstancesError, DescribeInstancesOutput,
};
use aws_sdk_ec2::types as ec2;
use aws_smithy_runtime_api::client::interceptors::context::{Error as SdkError, Output};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::date_time::Format;
use aws_smithy_types::primitive::Parse;
use aws_smithy_types::DateTime;
use cms_core::Instance;
use quick_xml::events::{BytesRef, Event};
use quick_xml::Reader;

/// Why an answer could not be read here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Not well-formed XML, or cut short (it ends inside an element): an error. The
    /// SDK's reader would take a document cut short and list the instances before
    /// the cut as if they were all.
    Malformed(String),
    /// Well-formed, but not what this reader reads (another root, a state code that
    /// is not a number): left to the SDK's reader, for its answer or its error.
    Other(String),
}

type Read<T> = std::result::Result<T, Unreadable>;

fn unreadable(why: impl std::fmt::Display) -> Unreadable {
    Unreadable::Other(why.to_string())
}

fn malformed(why: impl std::fmt::Display) -> Unreadable {
    Unreadable::Malformed(why.to_string())
}

const CUT_SHORT: &str = "the document ends inside an element";

/// A tag as EC2 gives it: key and value may each be missing.
#[derive(Debug, Default)]
pub(crate) struct Tag<'a> {
    pub key: Option<Cow<'a, str>>,
    pub value: Option<Cow<'a, str>>,
}

/// One private address of a network interface, and the public address on it.
#[derive(Debug, Default)]
pub(crate) struct NicAddress<'a> {
    pub private_ip: Option<Cow<'a, str>>,
    pub public_ip: Option<Cow<'a, str>>,
}

/// What the driver reads of a network interface.
#[derive(Debug, Default)]
pub(crate) struct Nic<'a> {
    pub subnet_id: Option<Cow<'a, str>>,
    pub private_ip: Option<Cow<'a, str>>,
    pub addresses: Vec<NicAddress<'a>>,
}

/// What the driver reads of a block device mapping (`blockDeviceMapping` item): the
/// device, and of its `ebs` the volume and whether it goes with the instance.
#[derive(Debug, Default)]
pub(crate) struct BlockDevice<'a> {
    pub device: Option<Cow<'a, str>>,
    pub volume_id: Option<Cow<'a, str>>,
    pub delete_on_termination: Option<bool>,
}

/// What the driver reads of an EC2 instance, from either reader.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a> {
    pub id: Option<Cow<'a, str>>,
    pub state_code: Option<i32>,
    pub state_name: Option<Cow<'a, str>>,
    pub image_id: Option<Cow<'a, str>>,
    pub instance_type: Option<Cow<'a, str>>,
    pub zone: Option<Cow<'a, str>>,
    pub subnet_id: Option<Cow<'a, str>>,
    pub private_ip: Option<Cow<'a, str>>,
    pub public_ip: Option<Cow<'a, str>>,
    pub key_name: Option<Cow<'a, str>>,
    pub launch_time: Option<DateTime>,
    pub client_token: Option<Cow<'a, str>>,
    pub tags: Vec<Tag<'a>>,
    pub nics: Vec<Nic<'a>>,
    /// The instance's security groups (`groupSet`): their ids, each may be missing.
    pub groups: Vec<Option<Cow<'a, str>>>,
    pub block_devices: Vec<BlockDevice<'a>>,
}

fn borrowed(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(Cow::Borrowed)
}

impl<'a> Fields<'a> {
    /// The view of an instance the SDK read.
    pub(crate) fn of(i: &'a ec2::Instance) -> Fields<'a> {
        Fields {
            id: borrowed(i.instance_id()),
            state_code: i.state().and_then(|s| s.code()),
            state_name: borrowed(i.state().and_then(|s| s.name()).map(|n| n.as_str())),
            image_id: borrowed(i.image_id()),
            instance_type: borrowed(i.instance_type().map(|t| t.as_str())),
            zone: borrowed(i.placement().and_then(|p| p.availability_zone())),
            subnet_id: borrowed(i.subnet_id()),
            private_ip: borrowed(i.private_ip_address()),
            public_ip: borrowed(i.public_ip_address()),
            key_name: borrowed(i.key_name()),
            launch_time: i.launch_time().copied(),
            client_token: borrowed(i.client_token()),
            tags: i
                .tags()
                .iter()
                .map(|t| Tag {
                    key: borrowed(t.key()),
                    value: borrowed(t.value()),
                })
                .collect(),
            nics: i
                .network_interfaces()
                .iter()
                .map(|n| Nic {
                    subnet_id: borrowed(n.subnet_id()),
                    private_ip: borrowed(n.private_ip_address()),
                    addresses: n
                        .private_ip_addresses()
                        .iter()
                        .map(|a| NicAddress {
                            private_ip: borrowed(a.private_ip_address()),
                            public_ip: borrowed(a.association().and_then(|x| x.public_ip())),
                        })
                        .collect(),
                })
                .collect(),
            groups: i
                .security_groups()
                .iter()
                .map(|g| borrowed(g.group_id()))
                .collect(),
            block_devices: i
                .block_device_mappings()
                .iter()
                .map(|m| BlockDevice {
                    device: borrowed(m.device_name()),
                    volume_id: borrowed(m.ebs().and_then(|e| e.volume_id())),
                    delete_on_termination: m.ebs().and_then(|e| e.delete_on_termination()),
                })
                .collect(),
        }
    }
}

/// A `DescribeInstances` answer: its instances as cms instances (those without an
/// id left out, as from the SDK's output), and the token of the next page.
#[derive(Debug)]
pub(crate) struct Answer {
    pub instances: Vec<Instance>,
    pub next_token: Option<String>,
}

/// The elements the reader looks at; anything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum El {
    Root,
    NextToken,
    ReservationSet,
    InstancesSet,
    Item,
    InstanceId,
    InstanceState,
    Code,
    Name,
    ImageId,
    InstanceType,
    Placement,
    AvailabilityZone,
    SubnetId,
    PrivateIpAddress,
    IpAddress,
    KeyName,
    LaunchTime,
    ClientToken,
    TagSet,
    Key,
    Value,
    NetworkInterfaceSet,
    PrivateIpAddressesSet,
    Association,
    PublicIp,
    GroupSet,
    GroupId,
    BlockDeviceMapping,
    DeviceName,
    Ebs,
    VolumeId,
    DeleteOnTermination,
    Other,
}

impl El {
    fn of(local: &[u8]) -> El {
        match local {
            b"DescribeInstancesResponse" => El::Root,
            b"nextToken" => El::NextToken,
            b"reservationSet" => El::ReservationSet,
            b"instancesSet" => El::InstancesSet,
            b"item" => El::Item,
            b"instanceId" => El::InstanceId,
            b"instanceState" => El::InstanceState,
            b"code" => El::Code,
            b"name" => El::Name,
            b"imageId" => El::ImageId,
            b"instanceType" => El::InstanceType,
            b"placement" => El::Placement,
            b"availabilityZone" => El::AvailabilityZone,
            b"subnetId" => El::SubnetId,
            b"privateIpAddress" => El::PrivateIpAddress,
            b"ipAddress" => El::IpAddress,
            b"keyName" => El::KeyName,
            b"launchTime" => El::LaunchTime,
            b"clientToken" => El::ClientToken,
            b"tagSet" => El::TagSet,
            b"key" => El::Key,
            b"value" => El::Value,
            b"networkInterfaceSet" => El::NetworkInterfaceSet,
            b"privateIpAddressesSet" => El::PrivateIpAddressesSet,
            b"association" => El::Association,
            b"publicIp" => El::PublicIp,
            b"groupSet" => El::GroupSet,
            b"groupId" => El::GroupId,
            b"blockDeviceMapping" => El::BlockDeviceMapping,
            b"deviceName" => El::DeviceName,
            b"ebs" => El::Ebs,
            b"volumeId" => El::VolumeId,
            b"deleteOnTermination" => El::DeleteOnTermination,
            _ => El::Other,
        }
    }
}

/// Reads a `DescribeInstances` answer (the body of a 200).
pub(crate) fn read(xml: &[u8]) -> Read<Answer> {
    let text = std::str::from_utf8(xml).map_err(unreadable)?;
    let mut x = Xml {
        r: Reader::from_str(text),
    };
    let (root, empty) = x.root()?;
    if root != El::Root {
        return Err(unreadable(
            "the root element is not DescribeInstancesResponse",
        ));
    }
    let mut answer = Answer {
        instances: Vec::new(),
        next_token: None,
    };
    if empty {
        return Ok(answer);
    }
    x.children(false, |x, el, empty| {
        match el {
            El::NextToken => answer.next_token = Some(x.text(empty)?.into_owned()),
            El::ReservationSet => {
                // A second reservationSet replaces the first, as in the SDK.
                answer.instances.clear();
                x.items(empty, |x, empty| {
                    x.reservation(empty, &mut answer.instances)
                })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(answer)
}

struct Xml<'a> {
    r: Reader<&'a [u8]>,
}

impl<'a> Xml<'a> {
    fn event(&mut self) -> Read<Event<'a>> {
        self.r.read_event().map_err(malformed)
    }

    /// The root element.
    fn root(&mut self) -> Read<(El, bool)> {
        loop {
            match self.event()? {
                Event::Start(e) => return Ok((El::of(e.local_name().as_ref()), false)),
                Event::Empty(e) => return Ok((El::of(e.local_name().as_ref()), true)),
                Event::Eof => return Err(unreadable("no root element")),
                Event::End(_) => return Err(malformed("an end tag before the root element")),
                _ => {}
            }
        }
    }

    /// The next child element of the element being read that the reader looks at (its
    /// name, and whether it is empty), or `None` at the end of the element. Elements it
    /// does not look at (most of an instance) are passed over whole, unparsed.
    fn child(&mut self) -> Read<Option<(El, bool)>> {
        loop {
            match self.event()? {
                Event::Start(e) => match El::of(e.local_name().as_ref()) {
                    El::Other => {
                        self.r.read_to_end(e.name()).map_err(malformed)?;
                    }
                    el => return Ok(Some((el, false))),
                },
                Event::Empty(e) => return Ok(Some((El::of(e.local_name().as_ref()), true))),
                Event::End(_) => return Ok(None),
                Event::Eof => return Err(malformed(CUT_SHORT)),
                _ => {}
            }
        }
    }

    /// Passes over the rest of an element whose start was just read.
    fn skip(&mut self, empty: bool) -> Read<()> {
        if empty {
            return Ok(());
        }
        let mut depth = 0usize;
        loop {
            match self.event()? {
                Event::Start(_) => depth += 1,
                Event::End(_) if depth == 0 => return Ok(()),
                Event::End(_) => depth -= 1,
                Event::Eof => return Err(malformed(CUT_SHORT)),
                _ => {}
            }
        }
    }

    /// Reads the children of the element whose start was just read with `f`, which
    /// answers whether it read the child; those it did not are passed over.
    fn children(
        &mut self,
        empty: bool,
        mut f: impl FnMut(&mut Self, El, bool) -> Read<bool>,
    ) -> Read<()> {
        if empty {
            return Ok(());
        }
        while let Some((el, empty)) = self.child()? {
            if !f(self, el, empty)? {
                self.skip(empty)?;
            }
        }
        Ok(())
    }

    /// Each `item` child of a list element, read by `f`; other children passed over.
    fn items(&mut self, empty: bool, mut f: impl FnMut(&mut Self, bool) -> Read<()>) -> Read<()> {
        self.children(empty, |x, el, empty| {
            if el != El::Item {
                return Ok(false);
            }
            f(x, empty)?;
            Ok(true)
        })
    }

    /// The `item`s of a list element, each read by `read`.
    fn list<T>(&mut self, empty: bool, read: fn(&mut Self, bool) -> Read<T>) -> Read<Vec<T>> {
        let mut out = Vec::new();
        self.items(empty, |x, empty| {
            out.push(read(x, empty)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The value of an element whose start was just read, as the SDK reads it.
    fn text(&mut self, empty: bool) -> Read<Cow<'a, str>> {
        if empty {
            return Ok(Cow::Borrowed(""));
        }
        let mut value: Cow<'a, str> = loop {
            match self.event()? {
                Event::Text(t) => break t.decode().map_err(unreadable)?,
                Event::GeneralRef(r) => {
                    let mut s = String::new();
                    push_reference(&mut s, &r)?;
                    break Cow::Owned(s);
                }
                Event::Start(_) | Event::Empty(_) => {
                    return Err(unreadable("an element where a value was expected"))
                }
                Event::End(_) => return Ok(Cow::Borrowed("")),
                Event::Eof => return Err(malformed(CUT_SHORT)),
                _ => {}
            }
        };
        // The rest of the run of text; whatever follows it in the element is ignored.
        loop {
            match self.event()? {
                Event::Text(t) => value.to_mut().push_str(&t.decode().map_err(unreadable)?),
                Event::GeneralRef(r) => push_reference(value.to_mut(), &r)?,
                Event::End(_) => return Ok(value),
                Event::Start(_) => {
                    self.skip(false)?;
                    self.skip(false)?;
                    return Ok(value);
                }
                Event::Eof => return Err(malformed(CUT_SHORT)),
                _ => {
                    self.skip(false)?;
                    return Ok(value);
                }
            }
        }
    }

    /// A reservation `item`: its instances appended to `out`.
    fn reservation(&mut self, empty: bool, out: &mut Vec<Instance>) -> Read<()> {
        let start = out.len();
        self.children(empty, |x, el, empty| {
            if el != El::InstancesSet {
                return Ok(false);
            }
            out.truncate(start);
            x.items(empty, |x, empty| {
                let fields = x.instance(empty)?;
                out.extend(crate::model::instance_from(&fields));
                Ok(())
            })?;
            Ok(true)
        })
    }

    fn instance(&mut self, empty: bool) -> Read<Fields<'a>> {
        let mut f = Fields::default();
        self.children(empty, |x, el, empty| {
            match el {
                El::InstanceId => f.id = Some(x.text(empty)?),
                El::ImageId => f.image_id = Some(x.text(empty)?),
                El::InstanceType => f.instance_type = Some(x.text(empty)?),
                El::SubnetId => f.subnet_id = Some(x.text(empty)?),
                El::PrivateIpAddress => f.private_ip = Some(x.text(empty)?),
                El::IpAddress => f.public_ip = Some(x.text(empty)?),
                El::KeyName => f.key_name = Some(x.text(empty)?),
                El::ClientToken => f.client_token = Some(x.text(empty)?),
                El::LaunchTime => {
                    let t = x.text(empty)?;
                    f.launch_time = Some(
                        DateTime::from_str(&t, Format::DateTimeWithOffset)
                            .map_err(|_| unreadable("launchTime is not a timestamp"))?,
                    );
                }
                El::InstanceState => {
                    // A second state replaces the first whole, as in the SDK.
                    f.state_code = None;
                    f.state_name = None;
                    x.children(empty, |x, el, empty| {
                        match el {
                            El::Code => {
                                let t = x.text(empty)?;
                                f.state_code =
                                    Some(i32::parse_smithy_primitive(&t).map_err(|_| {
                                        unreadable("the state code is not an integer")
                                    })?);
                            }
                            El::Name => f.state_name = Some(x.text(empty)?),
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                }
                El::Placement => {
                    f.zone = None;
                    x.children(empty, |x, el, empty| {
                        if el != El::AvailabilityZone {
                            return Ok(false);
                        }
                        f.zone = Some(x.text(empty)?);
                        Ok(true)
                    })?;
                }
                // A list given twice: the last one counts, as in the SDK.
                El::TagSet => f.tags = x.list(empty, Self::tag)?,
                El::NetworkInterfaceSet => f.nics = x.list(empty, Self::nic)?,
                El::GroupSet => f.groups = x.list(empty, Self::group)?,
                El::BlockDeviceMapping => f.block_devices = x.list(empty, Self::block_device)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(f)
    }

    fn tag(&mut self, empty: bool) -> Read<Tag<'a>> {
        let mut t = Tag::default();
        self.children(empty, |x, el, empty| {
            match el {
                El::Key => t.key = Some(x.text(empty)?),
                El::Value => t.value = Some(x.text(empty)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(t)
    }

    /// A `groupSet` item: the group's id.
    fn group(&mut self, empty: bool) -> Read<Option<Cow<'a, str>>> {
        let mut id = None;
        self.children(empty, |x, el, empty| {
            if el != El::GroupId {
                return Ok(false);
            }
            id = Some(x.text(empty)?);
            Ok(true)
        })?;
        Ok(id)
    }

    fn block_device(&mut self, empty: bool) -> Read<BlockDevice<'a>> {
        let mut b = BlockDevice::default();
        self.children(empty, |x, el, empty| {
            match el {
                El::DeviceName => b.device = Some(x.text(empty)?),
                El::Ebs => {
                    // A second `ebs` replaces the first whole, as in the SDK.
                    b.volume_id = None;
                    b.delete_on_termination = None;
                    x.children(empty, |x, el, empty| {
                        match el {
                            El::VolumeId => b.volume_id = Some(x.text(empty)?),
                            El::DeleteOnTermination => {
                                let t = x.text(empty)?;
                                b.delete_on_termination =
                                    Some(bool::parse_smithy_primitive(&t).map_err(|_| {
                                        unreadable("deleteOnTermination is not a boolean")
                                    })?);
                            }
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(b)
    }

    fn nic(&mut self, empty: bool) -> Read<Nic<'a>> {
        let mut n = Nic::default();
        self.children(empty, |x, el, empty| {
            match el {
                El::SubnetId => n.subnet_id = Some(x.text(empty)?),
                El::PrivateIpAddress => n.private_ip = Some(x.text(empty)?),
                El::PrivateIpAddressesSet => n.addresses = x.list(empty, Self::nic_address)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(n)
    }

    fn nic_address(&mut self, empty: bool) -> Read<NicAddress<'a>> {
        let mut a = NicAddress::default();
        self.children(empty, |x, el, empty| {
            match el {
                El::PrivateIpAddress => a.private_ip = Some(x.text(empty)?),
                El::Association => {
                    a.public_ip = None;
                    x.children(empty, |x, el, empty| {
                        if el != El::PublicIp {
                            return Ok(false);
                        }
                        a.public_ip = Some(x.text(empty)?);
                        Ok(true)
                    })?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(a)
    }
}

/// Appends what an entity or character reference stands for, as `aws-smithy-xml`
/// decodes it.
fn push_reference(out: &mut String, r: &BytesRef<'_>) -> Read<()> {
    let name = r.decode().map_err(unreadable)?;
    let c = match &*name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        other => {
            let (digits, radix) = match other.strip_prefix("#x") {
                Some(d) => (d, 16),
                None => match other.strip_prefix('#') {
                    Some(d) => (d, 10),
                    None => return Err(unreadable(format!("unknown entity &{other};"))),
                },
            };
            u32::from_str_radix(digits, radix)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| unreadable(format!("bad character reference &{other};")))?
        }
    };
    out.push(c);
    Ok(())
}

/// Puts [`read`] in the SDK's place for one `DescribeInstances` call: attach
/// [`Capture::interceptor`] to the call (`customize().interceptor(…)`), then
/// [`Capture::take`] its instances. The interceptor sets, just before the answer is
/// read, a response reader that reads a 200 answer here and hands the SDK an output
/// with only the next token; any other answer, or one [`read`] cannot read, goes to
/// the SDK's own reader (and `take` then answers `None`: map the SDK's output).
#[derive(Clone, Debug, Default)]
pub(crate) struct Capture {
    slot: std::sync::Arc<std::sync::Mutex<Option<Vec<Instance>>>>,
}

impl Capture {
    pub(crate) fn interceptor(&self) -> CaptureInterceptor {
        CaptureInterceptor(self.clone())
    }

    /// The instances [`read`] took from the answer, when it read it.
    pub(crate) fn take(&self) -> Option<Vec<Instance>> {
        self.slot.lock().ok()?.take()
    }
}

#[derive(Debug)]
pub(crate) struct CaptureInterceptor(Capture);

impl aws_sdk_ec2::config::Intercept for CaptureInterceptor {
    fn name(&self) -> &'static str {
        "cms::describe::CaptureInterceptor"
    }

    fn modify_before_deserialization(
        &self,
        _context: &mut aws_sdk_ec2::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _components: &aws_sdk_ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk_ec2::config::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(AnswerReader {
                capture: self.0.clone(),
            }));
        Ok(())
    }
}

/// The response reader [`CaptureInterceptor`] sets.
#[derive(Debug)]
struct AnswerReader {
    capture: Capture,
}

/// The operation's own configuration, where the SDK's reader of its answers is.
fn sdk_layer() -> &'static aws_sdk_ec2::config::FrozenLayer {
    use aws_sdk_ec2::config::RuntimePlugin;
    static LAYER: std::sync::OnceLock<aws_sdk_ec2::config::FrozenLayer> =
        std::sync::OnceLock::new();
    LAYER.get_or_init(|| {
        DescribeInstances::new()
            .config()
            .expect("the DescribeInstances operation has its configuration")
    })
}

impl DeserializeResponse for AnswerReader {
    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &aws_sdk_ec2::config::ConfigBag,
    ) -> std::result::Result<Output, OrchestratorError<SdkError>> {
        if response.status().is_success() {
            if let Some(body) = response.body().bytes() {
                match read(body) {
                    Ok(answer) => {
                        if let Ok(mut slot) = self.capture.slot.lock() {
                            *slot = Some(answer.instances);
                            let out = DescribeInstancesOutput::builder()
                                .set_next_token(answer.next_token)
                                .build();
                            return Ok(Output::erase(out));
                        }
                    }
                    Err(Unreadable::Malformed(why)) => {
                        return Err(OrchestratorError::operation(SdkError::erase(
                            DescribeInstancesError::unhandled(format!(
                                "the DescribeInstances answer is not well-formed XML: {why}"
                            )),
                        )));
                    }
                    Err(Unreadable::Other(why)) => tracing::debug!(
                        why = %why,
                        "DescribeInstances answer left to the SDK's reader"
                    ),
                }
            }
        }
        sdk_layer()
            .load::<SharedResponseDeserializer>()
            .expect("the SDK's reader of DescribeInstances answers")
            .deserialize_nonstreaming_with_config(response, cfg)
    }
}

#[cfg(test)]
mod tests;
