//! The client against a scripted node over real loopback sockets (tokio driver): pipelining,
//! streamed puts and gets across many frames, scatter-gather listing and paging, busy retries,
//! and the locator relay. The fake node implements just enough of the protocol, in one file, so
//! that the client's connection machinery is exercised without `candyboxd`.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use candybox_wire::client::placement::partition_of;
use candybox_wire::client::{
    ByteRange, ClientConfig, ClientError, KeyRange, ListOptions, Pieces, PutOptions, RenameOutcome, TokioClient,
};
use candybox_wire::fb;
use candybox_wire::frame::{verify_locator, verify_request, FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES};
use flatbuffers::FlatBufferBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CAP: u32 = 64 * 1024;

/// A Box's Candies by key.
type Candies = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
struct Store {
    boxes: HashMap<String, (u16, Candies)>,
    relayed: Vec<Vec<u8>>,
    sent_locators: Vec<Vec<u8>>,
    busy_left: u32,
    connections: u32,
}

type Shared = Arc<Mutex<Store>>;

async fn start_node() -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store: Shared = Arc::default();
    let s = Arc::clone(&store);
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            s.lock().unwrap().connections += 1;
            tokio::spawn(serve(sock, Arc::clone(&s), addr.port()));
        }
    });
    (addr.to_string(), store)
}

fn frame(kind: FrameKind, id: u64, end: bool, body: &[u8], payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader::for_body(kind, id, if end { FLAG_END } else { 0 }, body, payload.len() as u32);
    let mut v = h.encode().to_vec();
    v.extend_from_slice(body);
    v.extend_from_slice(payload);
    v
}

fn reply<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    kind: fb::ReplyBody,
    body: flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>,
) -> Vec<u8> {
    let r = fb::Reply::create(fbb, &fb::ReplyArgs { error: None, body_type: kind, body: Some(body) });
    fbb.finish(r, None);
    fbb.finished_data().to_vec()
}

fn done() -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let d = fb::Done::create(&mut fbb, &fb::DoneArgs {});
    reply(&mut fbb, fb::ReplyBody::Done, d.as_union_value())
}

fn error(code: fb::ErrorCode, message: &str) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let m = fbb.create_string(message);
    let e =
        fb::Error::create(&mut fbb, &fb::ErrorArgs { code, message: Some(m), retry_after_ms: 1, ..Default::default() });
    let r = fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: Some(e), ..Default::default() });
    fbb.finish(r, None);
    fbb.finished_data().to_vec()
}

fn box_reply(name: &str, partitions: u16) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let n = fbb.create_string(name);
    let info = fb::BoxInfo::create(
        &mut fbb,
        &fb::BoxInfoArgs { box_name: Some(n), partitions, created_ms: 1, box_uid: 1, node: 0, ..Default::default() },
    );
    let b = fb::BoxReply::create(&mut fbb, &fb::BoxReplyArgs { info: Some(info) });
    reply(&mut fbb, fb::ReplyBody::BoxReply, b.as_union_value())
}

fn locator(data: &[u8]) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let inline = fbb.create_vector(data);
    let l = fb::Locator::create(
        &mut fbb,
        &fb::LocatorArgs {
            version: 1,
            size: data.len() as u64,
            inline_body: Some(inline),
            box_uid: 1,
            ..Default::default()
        },
    );
    fbb.finish(l, None);
    fbb.finished_data().to_vec()
}

struct PendingPut {
    box_name: String,
    key: Vec<u8>,
    data: Vec<u8>,
}

async fn serve(mut sock: TcpStream, store: Shared, port: u16) {
    let mut puts: HashMap<u64, PendingPut> = HashMap::new();
    loop {
        let mut h = [0u8; FRAME_HEADER_BYTES];
        if sock.read_exact(&mut h).await.is_err() {
            return;
        }
        let header = FrameHeader::decode(&h, CAP).unwrap();
        let mut rest = vec![0u8; header.frame_len()];
        sock.read_exact(&mut rest).await.unwrap();
        let (body, payload) = rest.split_at(header.body_len as usize);
        header.check_body(body).unwrap();
        let id = header.request_id;
        if header.kind == FrameKind::Credit {
            // The fake sends every reply whole at once; it needs no credit.
            continue;
        }
        if header.kind == FrameKind::Cancel {
            // A put abandoned mid-body ends with a Cancel frame; a get was sent whole already.
            if puts.remove(&id).is_some() {
                sock.write_all(&FrameHeader::cancel(id)).await.unwrap();
            }
            continue;
        }
        if header.kind == FrameKind::Data {
            let p = puts.get_mut(&id).expect("data for a streamed put");
            p.data.extend_from_slice(payload);
            if header.is_end() {
                let p = puts.remove(&id).unwrap();
                let out = finish_put(&mut store.lock().unwrap(), p);
                sock.write_all(&frame(FrameKind::Reply, id, true, &out, &[])).await.unwrap();
            }
            continue;
        }
        let out = handle(&store, header, body, payload, &mut puts, port);
        for f in out {
            sock.write_all(&f).await.unwrap();
        }
    }
}

fn handle(
    store: &Shared,
    header: FrameHeader,
    body: &[u8],
    payload: &[u8],
    puts: &mut HashMap<u64, PendingPut>,
    port: u16,
) -> Vec<Vec<u8>> {
    let id = header.request_id;
    {
        let req = verify_request(body, CAP).unwrap();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut st = store.lock().unwrap();
        match req.body_type() {
            fb::RequestBody::Topology => {
                let mut fbb = FlatBufferBuilder::new();
                let ports = fbb.create_vector(&[port, port]);
                let placement = fbb.create_string("crc32-box-plus-partition-v1");
                let t = fb::TopologyReply::create(
                    &mut fbb,
                    &fb::TopologyReplyArgs {
                        node_id: 1,
                        shard_count: 2,
                        ports: Some(ports),
                        main_port: port,
                        placement: Some(placement),
                        shard: 0,
                    },
                );
                out.push(frame(
                    FrameKind::Reply,
                    id,
                    true,
                    &reply(&mut fbb, fb::ReplyBody::TopologyReply, t.as_union_value()),
                    &[],
                ));
            }
            fb::RequestBody::CreateBox => {
                let c = req.body_as_create_box().unwrap();
                st.boxes.insert(c.box_name().to_owned(), (c.partitions(), BTreeMap::new()));
                out.push(frame(FrameKind::Reply, id, true, &box_reply(c.box_name(), c.partitions()), &[]));
            }
            fb::RequestBody::HeadBox => {
                let name = req.body_as_head_box().unwrap().box_name();
                let body = match st.boxes.get(name) {
                    Some((p, _)) => box_reply(name, *p),
                    None => error(fb::ErrorCode::BoxNotFound, "no such box"),
                };
                out.push(frame(FrameKind::Reply, id, true, &body, &[]));
            }
            fb::RequestBody::Put => {
                let p = req.body_as_put().unwrap();
                let pending = PendingPut {
                    box_name: p.box_name().to_owned(),
                    key: p.key().bytes().to_vec(),
                    data: payload.to_vec(),
                };
                if header.is_end() {
                    let body = finish_put(&mut st, pending);
                    out.push(frame(FrameKind::Reply, id, true, &body, &[]));
                } else {
                    puts.insert(id, pending);
                }
            }
            fb::RequestBody::Head => {
                let h = req.body_as_head().unwrap();
                if h.key().bytes() == b"garbage" {
                    out.push(b"NOT A FRAME, NOT EVEN CLOSE......".to_vec());
                } else if h.key().bytes() == b"silent" {
                    // Never answered: the client's timeout must fire.
                } else if h.key().bytes() == b"busy" && st.busy_left > 0 {
                    st.busy_left -= 1;
                    out.push(frame(FrameKind::Reply, id, true, &error(fb::ErrorCode::Busy, "slow down"), &[]));
                } else {
                    let found = st.boxes.get(h.box_name()).and_then(|(_, m)| m.get(h.key().bytes())).map(Vec::len);
                    let body = match found {
                        Some(size) => {
                            let mut fbb = FlatBufferBuilder::new();
                            let m = fb::CandyMeta::create(
                                &mut fbb,
                                &fb::CandyMetaArgs { size: size as u64, ..Default::default() },
                            );
                            reply(&mut fbb, fb::ReplyBody::CandyMeta, m.as_union_value())
                        }
                        None => error(fb::ErrorCode::NotFound, "no such key"),
                    };
                    out.push(frame(FrameKind::Reply, id, true, &body, &[]));
                }
            }
            fb::RequestBody::Get => {
                let g = req.body_as_get().unwrap();
                match st.boxes.get(g.box_name()).and_then(|(_, m)| m.get(g.key().bytes())) {
                    None => {
                        out.push(frame(FrameKind::Reply, id, true, &error(fb::ErrorCode::NotFound, "no such key"), &[]))
                    }
                    Some(data) => {
                        let len = data.len() as u64;
                        let (first, last) = match g.range_kind() {
                            fb::RangeKind::FromTo => (g.first(), g.last().min(len - 1)),
                            fb::RangeKind::From => (g.first(), len - 1),
                            fb::RangeKind::Suffix => (len - g.first().min(len), len - 1),
                            _ => (0, len.saturating_sub(1)),
                        };
                        let sel = if len == 0 { &[][..] } else { &data[first as usize..=last as usize] };
                        let mut fbb = FlatBufferBuilder::new();
                        let meta =
                            fb::CandyMeta::create(&mut fbb, &fb::CandyMetaArgs { size: len, ..Default::default() });
                        let gd = fb::GetDone::create(
                            &mut fbb,
                            &fb::GetDoneArgs { meta: Some(meta), first, length: sel.len() as u64 },
                        );
                        let body = reply(&mut fbb, fb::ReplyBody::GetDone, gd.as_union_value());
                        // Stream in small pieces: a Reply with 3 bytes, then Data frames of 1000.
                        let head = sel.len().min(3);
                        out.push(frame(FrameKind::Reply, id, head == sel.len(), &body, &sel[..head]));
                        let mut rest = &sel[head..];
                        while !rest.is_empty() {
                            let n = rest.len().min(1000);
                            out.push(frame(FrameKind::Data, id, n == rest.len(), &[], &rest[..n]));
                            rest = &rest[n..];
                        }
                    }
                }
            }
            fb::RequestBody::List => {
                let l = req.body_as_list().unwrap();
                let (parts, map) = st.boxes.get(l.box_name()).unwrap();
                let after = l.start_after().map(|v| v.bytes().to_vec());
                let prefix = l.prefix().map(|v| v.bytes().to_vec()).unwrap_or_default();
                let mut keys: Vec<&Vec<u8>> = map
                    .keys()
                    .filter(|k| partition_of(k, *parts) == l.partition())
                    .filter(|k| k.starts_with(&prefix))
                    .filter(|k| match &after {
                        None => true,
                        Some(a) if l.reverse() => k.as_slice() < a.as_slice(),
                        Some(a) => k.as_slice() > a.as_slice(),
                    })
                    .collect();
                if l.reverse() {
                    keys.reverse();
                }
                let limit = if l.limit() == 0 { 1000 } else { l.limit() as usize };
                let more = keys.len() > limit;
                keys.truncate(limit);
                let mut fbb = FlatBufferBuilder::new();
                let entries: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        let key = fbb.create_vector(k);
                        fb::ListEntry::create(
                            &mut fbb,
                            &fb::ListEntryArgs { key: Some(key), size: map[*k].len() as u64, ..Default::default() },
                        )
                    })
                    .collect();
                let entries = fbb.create_vector(&entries);
                let next = if more { Some(fbb.create_vector(keys.last().unwrap())) } else { None };
                let page = fb::ListPage::create(
                    &mut fbb,
                    &fb::ListPageArgs { entries: Some(entries), next_start_after: next },
                );
                out.push(frame(
                    FrameKind::Reply,
                    id,
                    true,
                    &reply(&mut fbb, fb::ReplyBody::ListPage, page.as_union_value()),
                    &[],
                ));
            }
            fb::RequestBody::DeleteRange => {
                let d = req.body_as_delete_range().unwrap();
                let prefix = d.prefix().unwrap().bytes().to_vec();
                let partition = d.partition();
                let (parts, map) = st.boxes.get_mut(d.box_name()).unwrap();
                let parts = *parts;
                map.retain(|k, _| !(k.starts_with(&prefix) && partition_of(k, parts) == partition));
                out.push(frame(FrameKind::Reply, id, true, &done(), &[]));
            }
            fb::RequestBody::GetLocator => {
                let g = req.body_as_get_locator().unwrap();
                let data = st.boxes[g.box_name()].1[g.key().bytes()].clone();
                let loc = locator(&data);
                st.sent_locators.push(loc.clone());
                let mut fbb = FlatBufferBuilder::new();
                let bytes = fbb.create_vector(&loc);
                let lr =
                    fb::LocatorReply::create(&mut fbb, &fb::LocatorReplyArgs { locator: Some(bytes), partition: 0 });
                out.push(frame(
                    FrameKind::Reply,
                    id,
                    true,
                    &reply(&mut fbb, fb::ReplyBody::LocatorReply, lr.as_union_value()),
                    &[],
                ));
            }
            fb::RequestBody::PrepareRename => {
                let p = req.body_as_prepare_rename().unwrap();
                let data = st.boxes[p.box_name()].1[p.source_key().bytes()].clone();
                let loc = locator(&data);
                st.sent_locators.push(loc.clone());
                let mut fbb = FlatBufferBuilder::new();
                let bytes = fbb.create_vector(&loc);
                let token = fbb.create_vector(&[7u8; 16]);
                let rp = fb::RenamePrepared::create(
                    &mut fbb,
                    &fb::RenamePreparedArgs { token: Some(token), locator: Some(bytes), ..Default::default() },
                );
                out.push(frame(
                    FrameKind::Reply,
                    id,
                    true,
                    &reply(&mut fbb, fb::ReplyBody::RenamePrepared, rp.as_union_value()),
                    &[],
                ));
            }
            fb::RequestBody::ZeroCopyPut => {
                let z = req.body_as_zero_copy_put().unwrap();
                let bytes = z.locator().bytes().to_vec();
                let inline = verify_locator(&bytes, CAP).unwrap().inline_body().unwrap().bytes().to_vec();
                st.relayed.push(bytes);
                st.boxes.get_mut(z.box_name()).unwrap().1.insert(z.key().bytes().to_vec(), inline);
                out.push(frame(FrameKind::Reply, id, true, &done(), &[]));
            }
            fb::RequestBody::CompleteRename => {
                let c = req.body_as_complete_rename().unwrap();
                assert_eq!(c.token().bytes(), &[7u8; 16]);
                st.boxes.get_mut(c.box_name()).unwrap().1.remove(c.source_key().bytes());
                let mut fbb = FlatBufferBuilder::new();
                let rc = fb::RenameCompleted::create(
                    &mut fbb,
                    &fb::RenameCompletedArgs { outcome: fb::RenameOutcome::Finalized },
                );
                out.push(frame(
                    FrameKind::Reply,
                    id,
                    true,
                    &reply(&mut fbb, fb::ReplyBody::RenameCompleted, rc.as_union_value()),
                    &[],
                ));
            }
            _ => out.push(frame(
                FrameKind::Reply,
                id,
                true,
                &error(fb::ErrorCode::UnknownRequest, "not in the fake"),
                &[],
            )),
        }
        out
    }
}

fn finish_put(st: &mut Store, p: PendingPut) -> Vec<u8> {
    let Some((_, map)) = st.boxes.get_mut(&p.box_name) else { return error(fb::ErrorCode::BoxNotFound, "no such box") };
    let size = p.data.len() as u64;
    let checksum = crc32fast::hash(&p.data);
    map.insert(p.key, p.data);
    let mut fbb = FlatBufferBuilder::new();
    let d = fb::PutDone::create(&mut fbb, &fb::PutDoneArgs { size, checksum, hlc: None });
    reply(&mut fbb, fb::ReplyBody::PutDone, d.as_union_value())
}

async fn client(addr: &str) -> TokioClient {
    let mut config = ClientConfig::new(addr);
    config.frame_body_bytes_max = CAP;
    config.busy_backoff_max = std::time::Duration::from_millis(20);
    TokioClient::connect(config).await.unwrap()
}

#[tokio::test]
async fn streamed_put_and_ranged_get_cross_many_frames() {
    let (addr, _store) = start_node().await;
    let c = client(&addr).await;
    assert!(c.is_routing(), "{:?}", c.routing_off_reason());
    c.create_box("photos", Some(4)).await.unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let pieces: Vec<Bytes> = data.chunks(30_000).map(Bytes::copy_from_slice).collect();
    let done = c.put("photos", b"big", &PutOptions::default(), Pieces(pieces.into_iter())).await.unwrap();
    assert_eq!(done.size, data.len() as u64);
    assert_eq!(done.checksum, crc32fast::hash(&data));
    let (meta, got) = c.get_to_vec("photos", b"big", ByteRange::Whole).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert!(got == data);
    let (_, got) = c.get_to_vec("photos", b"big", ByteRange::FromTo { first: 10, last: 5009 }).await.unwrap();
    assert_eq!(got, &data[10..5010]);
    let (_, got) = c.get_to_vec("photos", b"big", ByteRange::Suffix { length: 50 }).await.unwrap();
    assert_eq!(got, &data[data.len() - 50..]);
    let err = c.get_to_vec("photos", b"missing", ByteRange::Whole).await.unwrap_err();
    assert!(matches!(err, ClientError::NotFound { .. }));
}

#[tokio::test]
async fn pipelined_requests_share_one_connection_per_shard() {
    let (addr, store) = start_node().await;
    let c = client(&addr).await;
    c.create_box("pipes", Some(8)).await.unwrap();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let c = Rc::new(c);
            let mut tasks = Vec::new();
            for i in 0..64u32 {
                let c = Rc::clone(&c);
                tasks.push(tokio::task::spawn_local(async move {
                    let key = format!("k{i:03}");
                    let body = Bytes::from(vec![i as u8; 100 + i as usize]);
                    c.put_bytes("pipes", key.as_bytes(), &PutOptions::default(), body.clone()).await.unwrap();
                    let (_, got) = c.get_to_vec("pipes", key.as_bytes(), ByteRange::Whole).await.unwrap();
                    assert_eq!(got, body);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await;
    // The main connection and at most one per shard.
    assert!(store.lock().unwrap().connections <= 3);
}

#[tokio::test]
async fn list_merges_partitions_and_pages_exactly() {
    let (addr, _store) = start_node().await;
    let c = client(&addr).await;
    c.create_box("listing", Some(5)).await.unwrap();
    let mut keys: Vec<String> = (0..57).map(|i| format!("key/{i:04}")).collect();
    keys.push("other".into());
    for k in &keys {
        c.put_bytes("listing", k.as_bytes(), &PutOptions::default(), Bytes::from_static(b"x")).await.unwrap();
    }
    keys.sort();
    for reverse in [false, true] {
        let mut options = ListOptions { limit: 7, reverse, ..ListOptions::default() };
        let mut seen = Vec::new();
        loop {
            let page = c.list("listing", &options).await.unwrap();
            assert!(page.entries.len() <= 7);
            seen.extend(page.entries.iter().map(|e| e.key_lossy().into_owned()));
            match page.next_start_after {
                Some(cur) => {
                    assert_eq!(Some(&cur), page.entries.last().map(|e| &e.key));
                    options.start_after = Some(cur);
                }
                None => break,
            }
        }
        let mut expected = keys.clone();
        if reverse {
            expected.reverse();
        }
        assert_eq!(seen, expected);
    }
    let all = c
        .list_all("listing", &ListOptions { prefix: Some(b"key/".to_vec()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(all.len(), 57);
    c.delete_range("listing", &KeyRange::Prefix(b"key/".to_vec())).await.unwrap();
    let rest = c.list_all("listing", &ListOptions::default()).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.key_lossy().into_owned()).collect::<Vec<_>>(), ["other"]);
}

#[tokio::test]
async fn busy_is_retried_and_errors_are_typed() {
    let (addr, store) = start_node().await;
    let c = client(&addr).await;
    c.create_box("busy", None).await.unwrap();
    c.put_bytes("busy", b"busy", &PutOptions::default(), Bytes::from_static(b"abc")).await.unwrap();
    store.lock().unwrap().busy_left = 3;
    let meta = c.head("busy", b"busy").await.unwrap();
    assert_eq!(meta.size, 3);
    store.lock().unwrap().busy_left = 100;
    let err = c.head("busy", b"busy").await.unwrap_err();
    assert!(matches!(err, ClientError::Busy { retry_after_ms: 1, .. }), "{err}");
    let err = c.head_box("nope").await.unwrap_err();
    assert!(matches!(err, ClientError::BoxNotFound { .. }));
    assert_eq!(err.to_string(), "box not found: no such box");
}

#[tokio::test]
async fn relay_copy_and_rename_carry_the_locator_bytes_unchanged() {
    let (addr, store) = start_node().await;
    let c = client(&addr).await;
    c.create_box("relay", Some(3)).await.unwrap();
    c.put_bytes("relay", b"src", &PutOptions::default(), Bytes::from_static(b"payload")).await.unwrap();
    c.relay_copy("relay", b"src", b"dst").await.unwrap();
    assert_eq!(c.get_to_vec("relay", b"dst", ByteRange::Whole).await.unwrap().1, b"payload");
    let outcome = c.relay_rename("relay", b"dst", b"moved").await.unwrap();
    assert_eq!(outcome, RenameOutcome::Finalized);
    assert!(c.head("relay", b"dst").await.unwrap_err().is_not_found());
    let st = store.lock().unwrap();
    assert_eq!(st.relayed.len(), 2);
    assert_eq!(st.relayed, st.sent_locators, "the node received exactly the bytes it sent");
}

/// The same client on monoio (io_uring), against the fake node running on a tokio thread.
#[cfg(feature = "monoio")]
#[test]
fn the_monoio_driver_puts_gets_and_lists() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let node = start_node().await;
            tx.send(node.0).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let addr = rx.recv().unwrap();
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().unwrap();
    rt.block_on(async move {
        let mut config = ClientConfig::new(addr);
        config.frame_body_bytes_max = CAP;
        let c = candybox_wire::client::MonoioClient::connect(config).await.unwrap();
        assert!(c.is_routing());
        c.create_box("uring", Some(4)).await.unwrap();
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        c.put_bytes("uring", b"obj", &PutOptions::default(), Bytes::from(data.clone())).await.unwrap();
        let (_, got) = c.get_to_vec("uring", b"obj", ByteRange::From { first: 1000 }).await.unwrap();
        assert!(got == data[1000..]);
        let all = c.list_all("uring", &ListOptions::default()).await.unwrap();
        assert_eq!(all.len(), 1);
    });
}

#[tokio::test]
async fn a_request_the_node_never_answers_times_out_and_frees_its_slot() {
    let (addr, _store) = start_node().await;
    let mut config = ClientConfig::new(addr);
    config.frame_body_bytes_max = CAP;
    config.request_timeout = std::time::Duration::from_millis(200);
    config.requests_in_flight_max = 1;
    let c = TokioClient::connect(config).await.unwrap();
    c.create_box("quiet", Some(1)).await.unwrap();
    let err = c.head("quiet", b"silent").await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.to_string().starts_with("timed out after 200 ms"), "{err}");
    // With one slot per connection, this only works if the timed-out request released it.
    c.put_bytes("quiet", b"k", &PutOptions::default(), Bytes::from_static(b"v")).await.unwrap();
    assert_eq!(c.head("quiet", b"k").await.unwrap().size, 1);
}

#[tokio::test]
async fn a_bad_frame_closes_the_connection_and_the_next_request_reconnects() {
    let (addr, store) = start_node().await;
    let c = client(&addr).await;
    c.create_box("bad", Some(1)).await.unwrap();
    let err = c.head("bad", b"garbage").await.unwrap_err();
    assert!(matches!(&err, ClientError::Protocol { reason } if reason.contains("magic")), "{err}");
    let before = store.lock().unwrap().connections;
    c.put_bytes("bad", b"k", &PutOptions::default(), Bytes::from_static(b"v")).await.unwrap();
    assert_eq!(c.head("bad", b"k").await.unwrap().size, 1);
    assert_eq!(store.lock().unwrap().connections, before + 1, "one new connection");
}

#[tokio::test]
async fn a_get_dropped_midway_leaves_its_connection_usable() {
    let (addr, store) = start_node().await;
    let c = client(&addr).await;
    c.create_box("drops", Some(1)).await.unwrap();
    let data = Bytes::from(vec![7u8; 50_000]);
    c.put_bytes("drops", b"k", &PutOptions::default(), data.clone()).await.unwrap();
    let connections = store.lock().unwrap().connections;
    for _ in 0..5 {
        let mut stream = c.get("drops", b"k", ByteRange::Whole).await.unwrap();
        assert!(stream.next_piece().await.unwrap().is_some());
        drop(stream);
        let (_, got) = c.get_to_vec("drops", b"k", ByteRange::Whole).await.unwrap();
        assert_eq!(got, data);
    }
    assert_eq!(store.lock().unwrap().connections, connections, "no reconnect");
}
