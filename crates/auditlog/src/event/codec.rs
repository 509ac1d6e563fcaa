//! The binary encoding of an event (the WAL payload). See docs/FORMAT.md,
//! "Event payload". No I/O; decoding borrows from the bytes.
//!
//! ```text
//! 0..2    type id, u16 LE (from the log's catalog)
//! 2       severity, u8 (0 DEBUG … 5 CRITICAL)
//! 3..11   time, i64 LE, nanoseconds since the Unix epoch (UTC)
//! 11..13  presence bits, u16 LE: bit i set when optional field i follows
//! 13..    the present fields, in bit order
//! ```
//! The type, severity and time sit at fixed offsets so a scan can filter on
//! them without decoding the rest.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::event::{Event, EventFields, Timestamp};
use crate::severity::Severity;

/// Bytes before the optional fields.
pub const HEADER_LEN: usize = 13;
const _: () = assert!(HEADER_LEN == 2 + 1 + 8 + 2);

/// The optional fields, in encoding order (bit `i` of the presence bits).
pub const FIELDS: [&str; 13] = [
    "source",
    "ip",
    "actor_id",
    "actor",
    "actor_account",
    "account_id",
    "session",
    "entity_type",
    "entity_id",
    "entity_name",
    "result",
    "attrs",
    "data",
];
const STRING_FIELDS: [usize; 10] = [
    TextField::Source as usize,
    TextField::ActorId as usize,
    TextField::Actor as usize,
    TextField::ActorAccount as usize,
    TextField::AccountId as usize,
    TextField::Session as usize,
    TextField::EntityType as usize,
    TextField::EntityId as usize,
    TextField::EntityName as usize,
    TextField::Data as usize,
];
const IP: usize = 1;
const RESULT: usize = 10;
/// The bit of the `ip` field.
pub const IP_FIELD: usize = IP;
/// The bit of the `result` field.
pub const RESULT_FIELD: usize = RESULT;
const ATTRS: usize = 11;

/// The optional fields that hold text; the value is the field's bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum TextField {
    /// `source`.
    Source = 0,
    /// `actor_id`.
    ActorId = 2,
    /// `actor`.
    Actor = 3,
    /// `actor_account`.
    ActorAccount = 4,
    /// `account_id`.
    AccountId = 5,
    /// `session`.
    Session = 6,
    /// `entity_type`.
    EntityType = 7,
    /// `entity_id`.
    EntityId = 8,
    /// `entity_name`.
    EntityName = 9,
    /// `data`.
    Data = 12,
}

/// Bytes that are not an encoded event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad event encoding at byte {offset}: {what}")]
pub struct DecodeError {
    /// Where in the payload.
    pub offset: usize,
    /// What is wrong.
    pub what: String,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// What the encoder reads of an event, owned ([`Event`]) or borrowed
/// ([`EventFields`]), so that both encode the same way without a copy.
trait Source {
    fn head(&self) -> (Timestamp, Severity);
    /// The text field with bit `i` (the bits of [`TextField`];
    /// `binary_round_trip` fails if the two disagree, since decoding goes
    /// through the enum).
    fn text(&self, i: usize) -> Option<&str>;
    fn ip(&self) -> Option<IpAddr>;
    fn result(&self) -> Option<i64>;
    fn attr_count(&self) -> usize;
    fn each_attr(&self, f: &mut dyn FnMut(&str, &str));
}

impl Source for Event {
    fn head(&self) -> (Timestamp, Severity) {
        (self.time, self.severity)
    }
    fn text(&self, i: usize) -> Option<&str> {
        match i {
            0 => self.source.as_deref(),
            2 => self.actor_id.as_deref(),
            3 => self.actor.as_deref(),
            4 => self.actor_account.as_deref(),
            5 => self.account_id.as_deref(),
            6 => self.session.as_deref(),
            7 => self.entity_type.as_deref(),
            8 => self.entity_id.as_deref(),
            9 => self.entity_name.as_deref(),
            12 => self.data.as_deref(),
            _ => None,
        }
    }
    fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
    fn result(&self) -> Option<i64> {
        self.result
    }
    fn attr_count(&self) -> usize {
        self.attrs.len()
    }
    fn each_attr(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in &self.attrs {
            f(k, v);
        }
    }
}

impl Source for EventFields<'_> {
    fn head(&self) -> (Timestamp, Severity) {
        (self.time, self.severity)
    }
    fn text(&self, i: usize) -> Option<&str> {
        match i {
            0 => self.source,
            2 => self.actor_id,
            3 => self.actor,
            4 => self.actor_account,
            5 => self.account_id,
            6 => self.session,
            7 => self.entity_type,
            8 => self.entity_id,
            9 => self.entity_name,
            12 => self.data,
            _ => None,
        }
    }
    fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
    fn result(&self) -> Option<i64> {
        self.result
    }
    fn attr_count(&self) -> usize {
        self.attrs.len()
    }
    fn each_attr(&self, f: &mut dyn FnMut(&str, &str)) {
        for &(k, v) in &self.attrs {
            f(k, v);
        }
    }
}

/// Appends the encoding of `e` to `out`, with `type_id` for its type and
/// `key_id` giving the interned id of each attribute key.
pub fn encode(e: &Event, type_id: u16, key_id: &mut dyn FnMut(&str) -> u32, out: &mut Vec<u8>) {
    encode_from(e, type_id, key_id, out);
}

/// [`encode`] of borrowed fields. Their attributes are written in the order
/// given: it must be ascending by key, without repeats (as an [`Event`]'s
/// map holds them), or the decoded event differs.
pub fn encode_fields(
    e: &EventFields<'_>,
    type_id: u16,
    key_id: &mut dyn FnMut(&str) -> u32,
    out: &mut Vec<u8>,
) {
    encode_from(e, type_id, key_id, out);
}

fn encode_from<E: Source>(
    e: &E,
    type_id: u16,
    key_id: &mut dyn FnMut(&str) -> u32,
    out: &mut Vec<u8>,
) {
    let (time, severity) = e.head();
    out.extend_from_slice(&type_id.to_le_bytes());
    out.push(severity.code());
    out.extend_from_slice(&time.0.to_le_bytes());
    let mut bits = 0u16;
    for i in STRING_FIELDS {
        bits |= u16::from(e.text(i).is_some()) << i;
    }
    bits |= u16::from(e.ip().is_some()) << IP;
    bits |= u16::from(e.result().is_some()) << RESULT;
    bits |= u16::from(e.attr_count() > 0) << ATTRS;
    out.extend_from_slice(&bits.to_le_bytes());
    for i in 0..FIELDS.len() {
        if bits & (1 << i) == 0 {
            continue;
        }
        match i {
            IP => match e.ip().expect("bit set") {
                IpAddr::V4(a) => {
                    out.push(4);
                    out.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    out.push(6);
                    out.extend_from_slice(&a.octets());
                }
            },
            RESULT => {
                let r = e.result().expect("bit set");
                put_varint(out, ((r << 1) ^ (r >> 63)) as u64); // zigzag
            }
            ATTRS => {
                put_varint(out, e.attr_count() as u64);
                e.each_attr(&mut |k, v| {
                    put_varint(out, u64::from(key_id(k)));
                    put_str(out, v);
                });
            }
            _ => put_str(out, e.text(i).expect("bit set")),
        }
    }
}

/// The length of the encoding of optional field `bit` at the start of
/// `bytes` (the compactor stores each field in a column of its own and finds
/// the boundaries again with this). `None` if it does not decode (text is
/// not checked for UTF-8 here).
#[inline(always)]
pub fn field_len(bit: usize, bytes: &[u8]) -> Option<usize> {
    // The common cases first, inlined: text shorter than 128 bytes (one
    // length byte), an address, a result code below 128 (one varint byte).
    match (bit, bytes.first()) {
        (IP, Some(4)) if bytes.len() > 4 => return Some(5),
        (IP, Some(6)) if bytes.len() > 16 => return Some(17),
        (RESULT, Some(&b)) if b < 0x80 => return Some(1),
        (IP | RESULT | ATTRS, _) => {}
        (_, Some(&n)) if n < 0x80 => {
            let len = 1 + usize::from(n);
            return (bytes.len() >= len && bit < FIELDS.len()).then_some(len);
        }
        _ => {}
    }
    other_field_len(bit, bytes)
}

#[inline(never)]
fn other_field_len(bit: usize, bytes: &[u8]) -> Option<usize> {
    let mut r = Reader { bytes, at: 0 };
    match bit {
        IP => {
            let n = match r.take(1).ok()?[0] {
                4 => 4,
                6 => 16,
                _ => return None,
            };
            r.take(n).ok()?;
        }
        RESULT => {
            r.varint().ok()?;
        }
        ATTRS => {
            let count = r.varint().ok()?;
            if count == 0 {
                return None;
            }
            for _ in 0..count {
                r.varint().ok()?;
                r.str().ok()?;
            }
        }
        b if b < FIELDS.len() => {
            // Boundaries only: UTF-8 is checked when the event is parsed.
            let len = r.varint().ok()?;
            r.take(len).ok()?;
        }
        _ => return None,
    }
    Some(r.at)
}

/// The type id, severity and time of `bytes` if they have the structure of
/// an encoded event (fixed header, known presence bits, fields that end
/// exactly at the end), without checking that text is UTF-8.
pub fn peek_structure(bytes: &[u8]) -> Option<(u16, Severity, Timestamp)> {
    walk(bytes, |_, _| {})
}

/// The structure check of [`peek_structure`] and [`split`]: the header, then
/// each present field's bit and byte range handed to `each` in bit order;
/// `None` unless the fields end exactly at the end.
#[inline(always)]
fn walk(
    bytes: &[u8],
    mut each: impl FnMut(usize, std::ops::Range<usize>),
) -> Option<(u16, Severity, Timestamp)> {
    let (id, sev) = peek_type_severity(bytes)?;
    let time = peek_time(bytes)?;
    let bits = u16::from_le_bytes(bytes.get(11..13)?.try_into().ok()?);
    if bits >> FIELDS.len() != 0 {
        return None;
    }
    let mut at = HEADER_LEN;
    // The present fields only, in bit order (most events have a few).
    let mut rest = bits;
    while rest != 0 {
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let n = field_len(i, &bytes[at..])?;
        each(i, at..at + n);
        at += n;
    }
    (at == bytes.len()).then_some((id, sev, time))
}

/// The type id and severity of an encoded event, from its first three bytes.
pub fn peek_type_severity(bytes: &[u8]) -> Option<(u16, Severity)> {
    let id = u16::from_le_bytes(bytes.get(0..2)?.try_into().ok()?);
    Some((id, Severity::from_code(*bytes.get(2)?)?))
}

/// The time of an encoded event.
pub fn peek_time(bytes: &[u8]) -> Option<Timestamp> {
    Some(Timestamp(i64::from_le_bytes(
        bytes.get(3..11)?.try_into().ok()?,
    )))
}

/// The optional fields of one encoded event, borrowed and not decoded: each
/// present field's encoding, found by its boundaries only (text is not yet
/// checked for UTF-8). What filters read before anything is built, from a
/// raw frame ([`split`]) or from the columns of a compacted block.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields<'a> {
    bits: u16,
    enc: [&'a [u8]; FIELDS.len()],
}

impl<'a> Fields<'a> {
    /// Records the encoding of optional field `bit` (whose length
    /// [`field_len`] gave).
    pub fn set(&mut self, bit: usize, encoding: &'a [u8]) {
        self.bits |= 1 << bit;
        self.enc[bit] = encoding;
    }

    /// Forgets every field (for the next row: cheaper than a new one).
    pub fn clear(&mut self) {
        self.bits = 0;
    }

    /// The presence bits.
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// The encoding of field `bit` (empty when absent).
    pub fn encoding(&self, bit: usize) -> &'a [u8] {
        self.enc[bit]
    }

    fn get(&self, bit: usize) -> Option<&'a [u8]> {
        (self.bits & (1 << bit) != 0).then(|| self.enc[bit])
    }

    /// The bytes of a text field (its length prefix removed), if present.
    #[inline]
    pub fn text(&self, field: TextField) -> Option<&'a [u8]> {
        let enc = self.get(field as usize)?;
        if let Some(&n) = enc.first().filter(|&&b| b < 0x80) {
            return enc.get(1..1 + usize::from(n));
        }
        let mut r = Reader { bytes: enc, at: 0 };
        let n = r.varint().ok()?;
        r.take(n).ok()
    }

    /// The client address, if present.
    pub fn ip(&self) -> Option<IpAddr> {
        let b = self.get(IP)?;
        match (b.first()?, b.len()) {
            (4, 5) => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&b[1..]).ok()?,
            ))),
            (6, 17) => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&b[1..]).ok()?,
            ))),
            _ => None,
        }
    }

    /// The result code, if present.
    pub fn result(&self) -> Option<i64> {
        let mut r = Reader {
            bytes: self.get(RESULT)?,
            at: 0,
        };
        let z = r.varint().ok()?;
        Some((z >> 1) as i64 ^ -((z & 1) as i64))
    }
}

/// The head of an encoded event: type id, severity code, time (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The type id.
    pub type_id: u16,
    /// The severity code.
    pub severity: u8,
    /// The time, nanoseconds since the epoch.
    pub time: i64,
}

/// Splits `bytes` into its head and fields if it has the structure of an
/// encoded event (as [`peek_structure`] checks), without decoding text.
pub fn split(bytes: &[u8]) -> Option<(Head, Fields<'_>)> {
    let mut fields = Fields::default();
    let (type_id, sev, time) = walk(bytes, |i, range| fields.set(i, &bytes[range]))?;
    let head = Head {
        type_id,
        severity: sev.code(),
        time: time.0,
    };
    Some((head, fields))
}

/// An encoded event, decoded in place: string fields borrow from the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// The type id.
    pub type_id: u16,
    /// The severity.
    pub severity: Severity,
    /// The time.
    pub time: Timestamp,
    strings: [Option<&'a str>; 13],
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The result code.
    pub result: Option<i64>,
    attrs: &'a [u8],
    attr_count: u64,
    attrs_at: usize,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, what: impl Into<String>) -> DecodeError {
        DecodeError {
            offset: self.at,
            what: what.into(),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| self.err("length too large"))?;
        if self.bytes.len() - self.at < n {
            return Err(self.err(format!(
                "{n} bytes needed, {} left",
                self.bytes.len() - self.at
            )));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self.take(1)?.first().expect("one byte");
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(self.err("varint not in its shortest form"));
                }
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.varint()?;
        let at = self.at;
        let b = self.take(len)?;
        std::str::from_utf8(b).map_err(|e| DecodeError {
            offset: at + e.valid_up_to(),
            what: "not UTF-8".into(),
        })
    }
}

impl<'a> EventRef<'a> {
    /// Decodes `bytes`, which must be exactly one encoded event.
    pub fn parse(bytes: &'a [u8]) -> Result<EventRef<'a>, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let head = r.take(HEADER_LEN as u64)?;
        let type_id = u16::from_le_bytes([head[0], head[1]]);
        let severity = Severity::from_code(head[2]).ok_or_else(|| DecodeError {
            offset: 2,
            what: format!("severity code {} out of range", head[2]),
        })?;
        let time = Timestamp(i64::from_le_bytes(head[3..11].try_into().expect("8 bytes")));
        let bits = u16::from_le_bytes([head[11], head[12]]);
        if bits >> FIELDS.len() != 0 {
            return Err(DecodeError {
                offset: 11,
                what: format!("unknown field bits {bits:#06x}"),
            });
        }
        let mut ev = EventRef {
            type_id,
            severity,
            time,
            strings: [None; 13],
            ip: None,
            result: None,
            attrs: &[],
            attr_count: 0,
            attrs_at: 0,
        };
        for i in 0..FIELDS.len() {
            if bits & (1 << i) == 0 {
                continue;
            }
            match i {
                IP => {
                    ev.ip = Some(match r.take(1)?[0] {
                        4 => {
                            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).expect("4")))
                        }
                        6 => IpAddr::V6(Ipv6Addr::from(
                            <[u8; 16]>::try_from(r.take(16)?).expect("16"),
                        )),
                        t => return Err(r.err(format!("IP address tag {t} is neither 4 nor 6"))),
                    })
                }
                RESULT => {
                    let z = r.varint()?;
                    ev.result = Some((z >> 1) as i64 ^ -((z & 1) as i64));
                }
                ATTRS => {
                    let count = r.varint()?;
                    if count == 0 {
                        return Err(r.err("attributes present but empty"));
                    }
                    let start = r.at;
                    for _ in 0..count {
                        let key = r.varint()?;
                        u32::try_from(key).map_err(|_| r.err("attribute key id too large"))?;
                        r.str()?;
                    }
                    ev.attrs = &bytes[start..r.at];
                    ev.attr_count = count;
                    ev.attrs_at = start;
                }
                _ => ev.strings[i] = Some(r.str()?),
            }
        }
        if r.at != bytes.len() {
            return Err(r.err(format!("{} bytes after the last field", bytes.len() - r.at)));
        }
        Ok(ev)
    }

    /// A text field, if present.
    pub fn text(&self, field: TextField) -> Option<&'a str> {
        self.strings[field as usize]
    }

    /// The attributes: (key id, value), in key order of the encoder.
    pub fn attrs(&self) -> impl Iterator<Item = (u32, &'a str)> + '_ {
        let mut r = Reader {
            bytes: self.attrs,
            at: 0,
        };
        (0..self.attr_count).map_while(move |_| {
            let key = r.varint().ok()? as u32;
            Some((key, r.str().ok()?))
        })
    }

    /// The owned event, naming its type and attribute keys with the given
    /// look-ups (the log's catalog).
    pub fn to_event(
        &self,
        type_name: &dyn Fn(u16) -> Option<String>,
        key_name: &dyn Fn(u32) -> Option<String>,
    ) -> Result<Event, DecodeError> {
        let event_type = type_name(self.type_id).ok_or_else(|| DecodeError {
            offset: 0,
            what: format!("type id {} is not in the catalog", self.type_id),
        })?;
        let mut e = Event::new(self.time, event_type, self.severity);
        let s = |f: TextField| self.text(f).map(String::from);
        e.source = s(TextField::Source);
        e.actor_id = s(TextField::ActorId);
        e.actor = s(TextField::Actor);
        e.actor_account = s(TextField::ActorAccount);
        e.account_id = s(TextField::AccountId);
        e.session = s(TextField::Session);
        e.entity_type = s(TextField::EntityType);
        e.entity_id = s(TextField::EntityId);
        e.entity_name = s(TextField::EntityName);
        e.data = s(TextField::Data);
        e.ip = self.ip;
        e.result = self.result;
        for (k, v) in self.attrs() {
            let key = key_name(k).ok_or_else(|| DecodeError {
                offset: self.attrs_at,
                what: format!("attribute key id {k} is not in the catalog"),
            })?;
            e.attrs.insert(key, v.to_string());
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `field_len`'s inlined common cases give what the full decoder of a
    /// field gives: for every field bit (and past them), every input of up
    /// to two bytes, and longer ones around each boundary.
    #[test]
    fn field_len_fast_paths_agree_with_the_full_decoder() {
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        for a in 0..=255u8 {
            inputs.push(vec![a]);
            for b in 0..=255u8 {
                inputs.push(vec![a, b]);
            }
        }
        for first in [0u8, 1, 4, 6, 0x7f, 0x80, 0x81, 0xff] {
            for len in 3..140 {
                let mut v = vec![first; len];
                inputs.push(v.clone());
                v[1] = 0x01;
                inputs.push(v);
            }
        }
        for bit in 0..16 {
            for input in &inputs {
                assert_eq!(
                    field_len(bit, input),
                    other_field_len(bit, input),
                    "bit {bit}, input {input:?}"
                );
            }
        }
    }
}
