//! Unit tests of the protocol core: no sockets, no runtime.

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use super::codec::{Frame, FrameDecoder, OutFrame, RequestEncoder};
use super::demux::{Demux, Inbound, Routed};
use super::error::ClientError;
use super::types::{ByteRange, Condition, CopyOptions, Hlc, PutOptions};
use super::{reply, request};
use crate::fb;
use crate::frame::{verify_request, FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES};

const CAP: u32 = 1 << 20;

/// A Reply frame as the node would send it.
fn reply_frame(id: u64, body: &[u8], payload: &[u8], end: bool) -> Vec<u8> {
    let flags = if end { FLAG_END } else { 0 };
    let h = FrameHeader::for_body(FrameKind::Reply, id, flags, body, payload.len() as u32);
    let mut v = h.encode().to_vec();
    v.extend_from_slice(body);
    v.extend_from_slice(payload);
    v
}

fn data_frame(id: u64, payload: &[u8], end: bool) -> Vec<u8> {
    let flags = if end { FLAG_END } else { 0 };
    let h = FrameHeader::for_body(FrameKind::Data, id, flags, &[], payload.len() as u32);
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

fn done_body() -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let done = fb::Done::create(&mut fbb, &fb::DoneArgs {});
    let r = fb::Reply::create(
        &mut fbb,
        &fb::ReplyArgs { error: None, body_type: fb::ReplyBody::Done, body: Some(done.as_union_value()) },
    );
    fbb.finish(r, None);
    fbb.finished_data().to_vec()
}

fn get_done_body(length: u64) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let ct = fbb.create_string("text/plain");
    let meta = fb::CandyMeta::create(
        &mut fbb,
        &fb::CandyMetaArgs { size: length, checksum: 7, content_type: Some(ct), ..Default::default() },
    );
    let g = fb::GetDone::create(&mut fbb, &fb::GetDoneArgs { meta: Some(meta), first: 0, length });
    let r = fb::Reply::create(
        &mut fbb,
        &fb::ReplyArgs { error: None, body_type: fb::ReplyBody::GetDone, body: Some(g.as_union_value()) },
    );
    fbb.finish(r, None);
    fbb.finished_data().to_vec()
}

fn error_body(code: fb::ErrorCode, retry_after_ms: u32) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let e = fb::Error::create(&mut fbb, &fb::ErrorArgs { code, retry_after_ms, ..Default::default() });
    let r = fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: Some(e), body_type: fb::ReplyBody::NONE, body: None });
    fbb.finish(r, None);
    fbb.finished_data().to_vec()
}

fn decode_all(decoder: &mut FrameDecoder) -> Result<Vec<Frame>, ClientError> {
    let mut out = Vec::new();
    while let Some(f) = decoder.decode()? {
        out.push(f);
    }
    Ok(out)
}

/// Decodes frames the client wrote (Request and Data), as the node would.
fn decode_request_frames(frames: &[OutFrame], cap: u32) -> Vec<(FrameHeader, Vec<u8>, Vec<u8>)> {
    frames
        .iter()
        .map(|f| {
            let bytes = f.to_vec();
            let mut h = [0u8; FRAME_HEADER_BYTES];
            h.copy_from_slice(&bytes[..FRAME_HEADER_BYTES]);
            let header = FrameHeader::decode(&h, cap).expect("a valid header");
            let body = bytes[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + header.body_len as usize].to_vec();
            header.check_body(&body).expect("body crc");
            let payload = bytes[FRAME_HEADER_BYTES + header.body_len as usize..].to_vec();
            assert_eq!(payload.len(), header.payload_len as usize);
            (header, body, payload)
        })
        .collect()
}

#[test]
fn a_request_round_trips_through_its_frame() {
    let body = request::put(
        "photos",
        b"cat.jpg",
        &PutOptions {
            content_type: Some("image/jpeg".into()),
            user_meta: vec![("a".into(), "b".into())],
            size: Some(3),
            condition: Some(Condition::IfVersion(Hlc { physical_ms: 1_700_000_000_000, logical: 2, node: 1 })),
            digests: vec![],
        },
    );
    let mut enc = RequestEncoder::new(42, body, CAP).expect("fits");
    let frames = enc.frames(Bytes::from_static(b"abc"), true);
    assert_eq!(frames.len(), 1);
    let decoded = decode_request_frames(&frames, CAP);
    let (h, body, payload) = &decoded[0];
    assert_eq!(h.kind, FrameKind::Request);
    assert_eq!(h.request_id, 42);
    assert!(h.is_end());
    assert_eq!(payload, b"abc");
    let req = verify_request(body, CAP).expect("verifies");
    let put = req.body_as_put().expect("a put");
    assert_eq!(put.box_name(), "photos");
    assert_eq!(put.key().bytes(), b"cat.jpg");
    assert_eq!(put.content_type(), Some("image/jpeg"));
    assert_eq!(put.size(), 3);
    assert_eq!(put.user_meta().map(|m| m.len()), Some(1));
    let c = put.condition().expect("the condition travels");
    assert_eq!(c.kind(), fb::ConditionKind::IfVersion);
    assert_eq!(c.version().map(|h| (h.physical_ms(), h.logical(), h.node())), Some((1_700_000_000_000, 2, 1)));
}

#[test]
fn versions_print_and_parse_alike_and_a_bad_one_is_named() {
    let h = Hlc { physical_ms: 1_700_000_000_123, logical: 7, node: 3 };
    assert_eq!(h.to_string(), "1700000000123.7@3");
    assert_eq!(h.to_string().parse::<Hlc>(), Ok(h));
    for bad in ["", "1700.1", "1700@1", "x.1@1", "1.1@node", "1.-1@1"] {
        let e = bad.parse::<Hlc>().expect_err(bad);
        assert!(e.contains("physical_ms.logical@node"), "{bad}: {e}");
    }
}

#[test]
fn a_streamed_body_is_split_at_the_cap_and_ends_once() {
    let body = request::put("photos", b"big", &PutOptions::default());
    let cap = body.len() as u32 + 10;
    let mut enc = RequestEncoder::new(7, body.clone(), cap).expect("fits");
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let mut frames = enc.frames(Bytes::copy_from_slice(&data[..300]), false);
    frames.extend(enc.frames(Bytes::new(), false));
    frames.extend(enc.frames(Bytes::copy_from_slice(&data[300..]), true));
    assert!(enc.is_ended());
    let decoded = decode_request_frames(&frames, cap);
    assert_eq!(decoded[0].0.kind, FrameKind::Request);
    assert_eq!(decoded[0].2.len(), 10, "the Request frame carries what fits next to its body");
    let mut all = Vec::new();
    for (i, (h, b, p)) in decoded.iter().enumerate() {
        assert!(h.frame_len() <= cap as usize);
        assert_eq!(h.request_id, 7);
        assert_eq!(h.is_end(), i == decoded.len() - 1, "only the last frame ends the message");
        if i > 0 {
            assert_eq!(h.kind, FrameKind::Data);
            assert!(b.is_empty());
        }
        all.extend_from_slice(p);
    }
    assert_eq!(all, data);
}

#[test]
fn an_empty_end_piece_still_ends_the_message() {
    let mut enc = RequestEncoder::new(1, request::put("b", b"k", &PutOptions::default()), CAP).expect("fits");
    let first = enc.frames(Bytes::from_static(b"x"), false);
    assert_eq!(first.len(), 1);
    assert!(!decode_request_frames(&first, CAP)[0].0.is_end());
    let last = decode_request_frames(&enc.frames(Bytes::new(), true), CAP);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].0.kind, FrameKind::Data);
    assert!(last[0].0.is_end());
    assert!(last[0].2.is_empty());
}

#[test]
fn a_body_larger_than_the_cap_is_refused_before_sending() {
    let body = request::put("b", &[b'k'; 100], &PutOptions::default());
    assert!(matches!(RequestEncoder::new(1, body, 50), Err(ClientError::LimitExceeded { .. })));
}

#[test]
fn the_decoder_handles_byte_at_a_time_input() {
    let mut wire = reply_frame(1, &get_done_body(5), b"he", false);
    wire.extend(data_frame(1, b"llo", true));
    wire.extend(reply_frame(2, &done_body(), b"", true));
    let mut decoder = FrameDecoder::new(CAP);
    let mut frames = Vec::new();
    for b in &wire {
        decoder.extend(std::slice::from_ref(b));
        frames.extend(decode_all(&mut decoder).expect("valid frames"));
    }
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].header.kind, FrameKind::Reply);
    assert_eq!(&frames[0].payload[..], b"he");
    assert_eq!(&frames[1].payload[..], b"llo");
    assert!(frames[1].header.is_end());
    assert_eq!(frames[2].header.request_id, 2);
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn the_decoder_lends_a_buffer_with_room_for_the_whole_frame() {
    let wire = reply_frame(9, &get_done_body(200_000), &vec![1u8; 200_000], true);
    let mut decoder = FrameDecoder::new(CAP);
    decoder.extend(&wire[..FRAME_HEADER_BYTES]);
    assert!(decoder.decode().expect("header ok").is_none());
    let buf = decoder.take_buffer();
    assert!(buf.capacity() - buf.len() >= wire.len() - FRAME_HEADER_BYTES);
    decoder.restore(buf);
    decoder.extend(&wire[FRAME_HEADER_BYTES..]);
    let f = decoder.decode().expect("valid").expect("complete");
    assert_eq!(f.payload.len(), 200_000);
}

fn first_error(wire: &[u8], cap: u32) -> ClientError {
    let mut decoder = FrameDecoder::new(cap);
    decoder.extend(wire);
    decode_all(&mut decoder).expect_err("refused")
}

#[test]
fn the_decoder_refuses_bad_frames_with_typed_errors() {
    let good = reply_frame(1, &done_body(), b"", true);

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(first_error(&bad_magic, CAP), ClientError::Protocol { reason } if reason.contains("magic")));

    let mut bad_header_crc = good.clone();
    bad_header_crc[10] ^= 1;
    assert!(
        matches!(first_error(&bad_header_crc, CAP), ClientError::Protocol { reason } if reason.contains("header checksum"))
    );

    let mut bad_body = good.clone();
    let last = bad_body.len() - 1;
    bad_body[last] ^= 0xff;
    assert!(
        matches!(first_error(&bad_body, CAP), ClientError::Protocol { reason } if reason.contains("body checksum"))
    );

    let too_large = reply_frame(1, &get_done_body(100), &[0u8; 100], true);
    assert!(
        matches!(first_error(&too_large, 64), ClientError::Protocol { reason } if reason.contains("exceeds the cap"))
    );

    let request = RequestEncoder::new(1, request::topology(), CAP).expect("fits").frames(Bytes::new(), true);
    assert!(
        matches!(first_error(&request[0].to_vec(), CAP), ClientError::Protocol { reason } if reason.contains("Request frame"))
    );

    // A body with a valid CRC that is not a Reply flatbuffer.
    let garbage = reply_frame(1, &[0xffu8; 16], b"", true);
    assert!(matches!(first_error(&garbage, CAP), ClientError::Protocol { reason } if reason.contains("flatbuffer")));
}

#[test]
fn a_bad_frame_is_reported_before_its_body_arrives() {
    // Only the header of an oversized frame is there: refused without waiting for the body.
    let wire = reply_frame(1, &get_done_body(100), &[0u8; 100], true);
    assert!(matches!(first_error(&wire[..FRAME_HEADER_BYTES], 64), ClientError::Protocol { .. }));
}

fn frames_of(wire: &[u8]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new(CAP);
    decoder.extend(wire);
    decode_all(&mut decoder).expect("valid")
}

#[test]
fn the_demux_routes_out_of_order_replies_and_interleaved_data() {
    let mut demux: Demux<&'static str> = Demux::new();
    let a = demux.register("a");
    let b = demux.register("b");
    let c = demux.register("c");
    assert_eq!((a, b, c), (1, 2, 3));
    let mut wire = reply_frame(c, &done_body(), b"", true);
    wire.extend(reply_frame(a, &get_done_body(4), b"a1", false));
    wire.extend(reply_frame(b, &get_done_body(4), b"b1", false));
    wire.extend(data_frame(a, b"a2", false));
    wire.extend(data_frame(b, b"b2", true));
    wire.extend(data_frame(a, b"", true));
    let mut got = Vec::new();
    for f in frames_of(&wire) {
        match demux.route(f).expect("in sequence") {
            Routed::Deliver { to, inbound, finished, .. } => {
                let piece = match inbound {
                    Inbound::Reply { payload, .. } | Inbound::Data { payload, .. } => payload,
                };
                got.push((to, String::from_utf8(piece.to_vec()).expect("utf8"), finished));
            }
            Routed::Dropped { .. } | Routed::Cancelled { .. } => panic!("nothing was abandoned or cancelled"),
        }
    }
    assert_eq!(
        got,
        vec![
            ("c", "".to_owned(), true),
            ("a", "a1".to_owned(), false),
            ("b", "b1".to_owned(), false),
            ("a", "a2".to_owned(), false),
            ("b", "b2".to_owned(), true),
            ("a", "".to_owned(), true),
        ]
    );
    assert_eq!(demux.live(), 0);
}

#[test]
fn the_demux_refuses_frames_out_of_sequence() {
    let mut demux: Demux<()> = Demux::new();
    let id = demux.register(());
    let unknown = frames_of(&reply_frame(99, &done_body(), b"", true)).remove(0);
    assert!(matches!(demux.route(unknown), Err(ClientError::Protocol { .. })));
    let early_data = frames_of(&data_frame(id, b"x", false)).remove(0);
    assert!(
        matches!(demux.route(early_data), Err(ClientError::Protocol { reason }) if reason.contains("before the Reply"))
    );
    let first = frames_of(&reply_frame(id, &get_done_body(2), b"", false)).remove(0);
    assert!(matches!(demux.route(first), Ok(Routed::Deliver { finished: false, .. })));
    let second = frames_of(&reply_frame(id, &done_body(), b"", true)).remove(0);
    assert!(matches!(demux.route(second), Err(ClientError::Protocol { reason }) if reason.contains("second Reply")));
    // After the end, the id is gone: a late frame is out of sequence.
    let end = frames_of(&data_frame(id, b"xy", true)).remove(0);
    assert!(matches!(demux.route(end), Ok(Routed::Deliver { finished: true, .. })));
    let late = frames_of(&data_frame(id, b"z", true)).remove(0);
    assert!(matches!(demux.route(late), Err(ClientError::Protocol { .. })));
}

#[test]
fn an_abandoned_request_frees_its_slot_and_its_late_frames_are_dropped() {
    let mut demux: Demux<()> = Demux::new();
    let id = demux.register(());
    assert!(demux.abandon(id));
    assert_eq!(demux.live(), 0);
    assert_eq!(demux.abandoned(), 1);
    let reply = frames_of(&reply_frame(id, &get_done_body(1), b"", false)).remove(0);
    assert!(matches!(demux.route(reply), Ok(Routed::Dropped { .. })));
    let end = frames_of(&data_frame(id, b"x", true)).remove(0);
    assert!(matches!(demux.route(end), Ok(Routed::Dropped { .. })));
    assert_eq!(demux.abandoned(), 0);
}

#[test]
fn wire_errors_become_their_variants_with_one_line_messages() {
    let busy = error_body(fb::ErrorCode::Busy, 25);
    let e = reply::done(&busy, CAP).expect_err("an error");
    assert!(matches!(e, ClientError::Busy { retry_after_ms: 25, .. }));

    let mut fbb = FlatBufferBuilder::new();
    let field = fbb.create_string("key");
    let message = fbb.create_string("longer than 1 KiB");
    let err = fb::Error::create(
        &mut fbb,
        &fb::ErrorArgs {
            code: fb::ErrorCode::InvalidArgument,
            field: Some(field),
            message: Some(message),
            ..Default::default()
        },
    );
    let r = fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: Some(err), ..Default::default() });
    fbb.finish(r, None);
    let e = reply::done(fbb.finished_data(), CAP).expect_err("an error");
    assert!(matches!(&e, ClientError::InvalidArgument { field, .. } if field == "key"));
    assert_eq!(e.to_string(), "invalid argument `key`: longer than 1 KiB");

    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string("user_meta_bytes_max");
    let err = fb::Error::create(
        &mut fbb,
        &fb::ErrorArgs {
            code: fb::ErrorCode::LimitExceeded,
            limit_name: Some(name),
            limit_value: 9000,
            limit_max: 8192,
            ..Default::default()
        },
    );
    let r = fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: Some(err), ..Default::default() });
    fbb.finish(r, None);
    let e = reply::done(fbb.finished_data(), CAP).expect_err("an error");
    assert!(
        matches!(&e, ClientError::LimitExceeded { limit, value: 9000, max: 8192, .. } if limit == "user_meta_bytes_max")
    );

    for code in fb::ErrorCode::ENUM_VALUES {
        let body = error_body(*code, 0);
        let e = reply::done(&body, CAP).expect_err("an error");
        assert_eq!(e.code(), Some(*code));
        assert!(!e.to_string().contains('\n'));
    }
    let unknown = error_body(fb::ErrorCode(999), 0);
    assert!(matches!(reply::done(&unknown, CAP), Err(ClientError::Internal { message }) if message.contains("999")));
}

#[test]
fn an_unexpected_reply_kind_is_a_protocol_error() {
    assert!(
        matches!(reply::box_reply(&done_body(), CAP), Err(ClientError::Protocol { reason }) if reason.contains("BoxReply"))
    );
}

/// A `Locator` flatbuffer like the node's.
fn locator_bytes() -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let ct = fbb.create_string("application/octet-stream");
    let inline = fbb.create_vector(b"tiny body");
    let hlc = fb::Hlc::new(1_700_000_000_000, 3, 1);
    let loc = fb::Locator::create(
        &mut fbb,
        &fb::LocatorArgs {
            version: 1,
            hlc: Some(&hlc),
            content_type: Some(ct),
            size: 9,
            inline_body: Some(inline),
            box_uid: 77,
            ..Default::default()
        },
    );
    fbb.finish(loc, None);
    fbb.finished_data().to_vec()
}

#[test]
fn a_relayed_locator_travels_byte_for_byte() {
    let locator = locator_bytes();
    let mut fbb = FlatBufferBuilder::new();
    let bytes = fbb.create_vector(&locator);
    let lr = fb::LocatorReply::create(&mut fbb, &fb::LocatorReplyArgs { locator: Some(bytes), partition: 5 });
    let r = fb::Reply::create(
        &mut fbb,
        &fb::ReplyArgs { error: None, body_type: fb::ReplyBody::LocatorReply, body: Some(lr.as_union_value()) },
    );
    fbb.finish(r, None);
    let body = Bytes::copy_from_slice(fbb.finished_data());
    let relayed = reply::locator_reply(&body, CAP).expect("a locator");
    assert_eq!(relayed.partition, 5);
    assert_eq!(&relayed.locator[..], &locator[..]);
    // A slice of the received body, not a copy.
    let start = relayed.locator.as_ptr() as usize - body.as_ptr() as usize;
    assert!(start + relayed.locator.len() <= body.len());

    let req = request::zero_copy_put("b", b"dst", &relayed.locator, Some((&[9u8; 16], 3)), &CopyOptions::default());
    let req = verify_request(&req, CAP).expect("verifies");
    let zc = req.body_as_zero_copy_put().expect("zero-copy put");
    assert_eq!(zc.locator().bytes(), &locator[..]);
    assert_eq!(zc.rename_token().map(|t| t.bytes().to_vec()), Some(vec![9u8; 16]));
    assert_eq!(zc.source_partition(), 3);
    let copy = request::zero_copy_put("b", b"dst", &relayed.locator, None, &CopyOptions::default());
    assert_eq!(
        verify_request(&copy, CAP).expect("verifies").body_as_zero_copy_put().map(|z| z.source_partition()),
        Some(-1)
    );
    let nested = crate::frame::verify_locator(zc.locator().bytes(), CAP).expect("still a locator");
    assert_eq!(nested.box_uid(), 77);
}

#[test]
fn byte_ranges_parse_like_http() {
    assert_eq!("0-99".parse(), Ok(ByteRange::FromTo { first: 0, last: 99 }));
    assert_eq!("100-".parse(), Ok(ByteRange::From { first: 100 }));
    assert_eq!("-50".parse(), Ok(ByteRange::Suffix { length: 50 }));
    for bad in ["", "-", "abc", "5-3", "1-2-3", "x-"] {
        assert!(bad.parse::<ByteRange>().is_err(), "{bad}");
    }
    let req = request::get("b", b"k", ByteRange::Suffix { length: 50 });
    let req = verify_request(&req, CAP).expect("verifies");
    let g = req.body_as_get().expect("a get");
    assert_eq!((g.range_kind(), g.first()), (fb::RangeKind::Suffix, 50));
}

#[test]
fn a_message_that_repeats_the_error_is_not_printed_twice() {
    let e = ClientError::NotFound { message: "not found".into(), delete_marker: None };
    assert_eq!(e.to_string(), "not found");
    let e = ClientError::NotFound { message: "key `a` in box `b`".into(), delete_marker: None };
    assert_eq!(e.to_string(), "not found: key `a` in box `b`");
    let e = ClientError::BoxNotEmpty { message: String::new() };
    assert_eq!(e.to_string(), "box is not empty");
    // Story: `create-box photos` twice said `box already exists: box photos already exists`.
    let e = ClientError::BoxExists { message: "box already exists: photos".into() };
    assert_eq!(e.to_string(), "box already exists: photos");
    let e = ClientError::Conflict { message: "conflict: another rename of this source is in progress".into() };
    assert_eq!(e.to_string(), "conflict: another rename of this source is in progress");
}
