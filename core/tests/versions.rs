//! Versioned Boxes in the partition engine (issue 14, item 1; docs/versioning.md): every write
//! of an enabled Box makes a version, a delete writes a delete marker, versions read by id and
//! list in (key, newest first) order across pages, deleting a version makes the next newest
//! current again, suspended Boxes keep one null version per key, and non-current versions
//! survive flushes, compactions, a crash and the Box-global GC — until deleted, when the GC
//! reclaims their Syrups after the grace period.

use std::{collections::BTreeSet, path::Path, rc::Rc};

use candybox_core::{
    engine::{Engine, EngineConfig, PutOptions, SliceBody, VersionListOptions, Versioning},
    error::Error,
    hlc::Hlc,
    limits::KEY_BYTES_MAX,
    locator::Kind,
    runtime::{block_on, ManualClock},
    testing::{
        open_engine,
        sim::{CrashMode, SimStorage},
        small_config,
    },
};

const T0: u64 = 1_700_000_000_000;
type E = Engine<SimStorage>;

fn cfg(versioning: Versioning) -> EngineConfig {
    let mut c = small_config(Path::new("/v"), 0);
    c.auto_maintenance = false;
    c.versioning = versioning;
    c
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

async fn put(e: &E, key: &[u8], data: &[u8]) -> Hlc {
    e.put(key, PutOptions::default(), SliceBody::new(data.to_vec())).await.expect("put").hlc
}

async fn read(e: &E, key: &[u8]) -> Option<Vec<u8>> {
    match e.get(key, None).await {
        Ok(g) => Some(g.body.read_to_vec().expect("read")),
        Err(Error::NotFound) => None,
        Err(err) => panic!("get: {err}"),
    }
}

async fn read_version(e: &E, key: &[u8], id: Hlc) -> Vec<u8> {
    e.get_version(key, id, None).await.expect("get version").body.read_to_vec().expect("read")
}

/// (key, id, is latest, is marker) of every version, paging by `page` entries.
fn all_versions(e: &E, prefix: Option<&[u8]>, page: u32) -> Vec<(Vec<u8>, Hlc, bool, bool)> {
    let mut opts = VersionListOptions { prefix: prefix.map(<[u8]>::to_vec), limit: page, ..Default::default() };
    let mut out = Vec::new();
    loop {
        let p = e.list_versions(&opts).expect("list versions");
        assert!(p.entries.len() <= page as usize);
        out.extend(p.entries.iter().map(|v| (v.key.clone(), v.version, v.is_latest, v.is_delete_marker())));
        match p.next {
            Some((k, v)) => {
                opts.key_marker = Some(k);
                opts.version_marker = Some(v);
            }
            None => return out,
        }
    }
}

#[test]
fn versions_markers_and_deletes_by_id() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(T0));
        let (e, _) = open_engine(sim.clone(), clock.clone(), cfg(Versioning::Enabled)).await.expect("open");
        // Bodies inline (small) and in Syrups (larger than the inline limit).
        let (a, b, c) = (body(10, 1), body(5000, 2), body(20, 3));
        let v1 = put(&e, b"doc", &a).await;
        clock.advance(std::time::Duration::from_millis(5));
        let v2 = put(&e, b"doc", &b).await;
        let v3 = put(&e, b"doc", &c).await;
        assert!(v1 < v2 && v2 < v3);
        assert_eq!(read(&e, b"doc").await, Some(c.clone()));
        assert_eq!(e.head(b"doc").await.expect("head").version(), v3);
        for (v, want) in [(v1, &a), (v2, &b), (v3, &c)] {
            assert_eq!(&read_version(&e, b"doc", v).await, want, "version {v} reads its own bytes");
        }
        let ids: Vec<Hlc> = e.versions_of(b"doc").expect("versions").into_iter().map(|(v, _)| v).collect();
        assert_eq!(ids, vec![v3, v2, v1], "newest first");

        // A delete writes a marker: the key reads as absent, and lists only as versions.
        let marker = e.delete(b"doc").await.expect("delete");
        assert_eq!(read(&e, b"doc").await, None);
        assert!(e.list(&Default::default()).await.expect("list").entries.is_empty(), "no version leaks into list");
        assert!(matches!(e.get_version(b"doc", marker, None).await, Err(Error::DeleteMarker { .. })));
        assert_eq!(
            all_versions(&e, None, 2),
            vec![
                (b"doc".to_vec(), marker, true, true),
                (b"doc".to_vec(), v3, false, false),
                (b"doc".to_vec(), v2, false, false),
                (b"doc".to_vec(), v1, false, false),
            ]
        );
        // Deleting the marker makes v3 current again, with its own id.
        e.delete_version(b"doc", marker).await.expect("delete marker");
        assert_eq!(read(&e, b"doc").await, Some(c.clone()));
        assert_eq!(e.head(b"doc").await.expect("head").version(), v3);
        // Deleting the current version makes the next newest current.
        e.delete_version(b"doc", v3).await.expect("delete v3");
        assert_eq!(read(&e, b"doc").await, Some(b.clone()));
        assert_eq!(e.head(b"doc").await.expect("head").version(), v2);
        // A non-current one goes alone; an unknown id changes nothing.
        e.delete_version(b"doc", v1).await.expect("delete v1");
        e.delete_version(b"doc", Hlc { physical_ms: 1, logical: 0, node: 0 }).await.expect("unknown id");
        assert_eq!(all_versions(&e, None, 10), vec![(b"doc".to_vec(), v2, true, false)]);
        assert!(matches!(e.get_version(b"doc", v1, None).await, Err(Error::NotFound)));
        e.delete_version(b"doc", v2).await.expect("delete the last");
        assert_eq!(read(&e, b"doc").await, None);
        assert!(all_versions(&e, None, 10).is_empty());
    });
}

#[test]
fn versions_list_in_key_order_across_pages_and_survive_flush_compaction_and_a_crash() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(T0));
        let (e, _) = open_engine(sim.clone(), clock.clone(), cfg(Versioning::Enabled)).await.expect("open");
        // Keys that are prefixes of one another and a longest key: versions stay grouped.
        let long = vec![b'k'; KEY_BYTES_MAX];
        let keys: Vec<Vec<u8>> = vec![b"a".to_vec(), b"a/b".to_vec(), b"a\x00".to_vec(), b"ab".to_vec(), long];
        let mut want = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let mut ids = Vec::new();
            for j in 0..3u8 {
                ids.push((put(&e, k, &body(100 + usize::from(j) * 3000, j + i as u8)).await, j));
            }
            if i % 2 == 1 {
                ids.push((e.delete(k).await.expect("delete"), 9));
            }
            ids.reverse();
            let n = ids.len();
            for (pos, (id, j)) in ids.into_iter().enumerate() {
                want.push((k.clone(), id, pos == 0, j == 9));
                let _ = n;
            }
        }
        want.sort_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
        assert_eq!(all_versions(&e, None, 4), want, "(key, newest first) across pages of 4");
        let a_only: Vec<_> = want.iter().filter(|w| w.0.starts_with(b"a")).cloned().collect();
        assert_eq!(all_versions(&e, Some(b"a"), 3), a_only, "a prefix");

        // Flush and compaction keep every version; so does a crash after them.
        e.flush().await.expect("flush");
        e.compact().await.expect("compact");
        assert_eq!(all_versions(&e, None, 100), want);
        sim.crash(CrashMode::DropUnsynced);
        let (e, _) = open_engine(sim.clone(), clock.clone(), cfg(Versioning::Enabled)).await.expect("reopen");
        assert_eq!(all_versions(&e, None, 7), want, "after a crash");
        for (k, id, _, marker) in &want {
            if !marker {
                let got = read_version(&e, k, *id).await;
                assert!(got.len() >= 100, "non-current version of {} readable", k.len());
            }
        }
        // The user-space listing is unchanged by the version space.
        let listed: Vec<Vec<u8>> =
            e.list(&Default::default()).await.expect("list").entries.into_iter().map(|x| x.key).collect();
        assert_eq!(listed, vec![b"a".to_vec(), b"a\x00".to_vec(), keys[4].clone()]);
    });
}

#[test]
fn versioning_enabled_later_and_suspended_keep_what_s3_keeps() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(T0));
        let (e, _) = open_engine(sim.clone(), clock.clone(), cfg(Versioning::Off)).await.expect("open");
        let old = put(&e, b"k", b"written while off").await;
        assert!(e.versions_of(b"k").expect("versions").is_empty(), "no version space while off");
        e.set_versioning(Versioning::Enabled).expect("enable");
        let v1 = put(&e, b"k", b"first versioned").await;
        // The object written while off is kept as a version, under its own id.
        let ids: Vec<Hlc> = e.versions_of(b"k").expect("versions").into_iter().map(|(v, _)| v).collect();
        assert_eq!(ids, vec![v1, old]);
        assert_eq!(read_version(&e, b"k", old).await, b"written while off");

        e.set_versioning(Versioning::Suspended).expect("suspend");
        let n1 = put(&e, b"k", b"null one").await;
        assert_eq!(n1, Hlc::ZERO, "a suspended write is the null version");
        assert_eq!(e.head(b"k").await.expect("head").version(), Hlc::ZERO);
        put(&e, b"k", b"null two").await;
        let versions = e.versions_of(b"k").expect("versions");
        assert_eq!(versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(), vec![v1, old, Hlc::ZERO], "one null version");
        assert_eq!(read_version(&e, b"k", Hlc::ZERO).await, b"null two");
        // A delete in a suspended Box: a null delete marker.
        e.delete(b"k").await.expect("delete");
        assert_eq!(read(&e, b"k").await, None);
        let null = e.versions_of(b"k").expect("versions").into_iter().find(|(v, _)| *v == Hlc::ZERO).expect("null");
        assert_eq!(null.1.kind, Kind::DeleteMarker);
        assert!(matches!(e.set_versioning(Versioning::Off), Err(Error::InvalidArgument { .. })));
        // Deleting the null marker brings back the newest other version.
        e.delete_version(b"k", Hlc::ZERO).await.expect("delete null");
        assert_eq!(read(&e, b"k").await.as_deref(), Some(&b"first versioned"[..]));
    });
}

#[test]
fn a_deleted_version_lets_the_gc_reclaim_its_syrup_and_a_kept_one_does_not() {
    block_on(async {
        let sim = SimStorage::new();
        let clock = Rc::new(ManualClock::new(T0));
        let mut c = cfg(Versioning::Enabled);
        c.syrup_roll_bytes = 64 * 1024;
        let (e, _) = open_engine(sim.clone(), clock.clone(), c.clone()).await.expect("open");
        let old_body = body(200_000, 7);
        let v1 = put(&e, b"big", &old_body).await;
        let old_syrups: BTreeSet<_> = e.version_locator(b"big", v1).expect("v1").syrups().collect();
        // Newer versions fill other Syrups.
        for i in 0..3u8 {
            put(&e, b"big", &body(200_000, 20 + i)).await;
        }
        e.flush().await.expect("flush");
        e.compact().await.expect("compact");
        clock.advance(std::time::Duration::from_millis(10 * c.gc_grace_ms));
        e.reclaim(&BTreeSet::new(), true).await.expect("reclaim");
        let report = e.gc(&BTreeSet::new()).await.expect("gc");
        assert!(
            old_syrups.iter().all(|s| !report.syrups_deleted.contains(s)),
            "a non-current version keeps its Syrups"
        );
        assert_eq!(read_version(&e, b"big", v1).await, old_body);

        e.delete_version(b"big", v1).await.expect("delete v1");
        e.flush().await.expect("flush");
        // Space reclamation scans what is live (every version included) and condemns the
        // Syrups nothing live uses.
        e.reclaim(&BTreeSet::new(), true).await.expect("reclaim");
        let first = e.gc(&BTreeSet::new()).await.expect("gc");
        clock.advance(std::time::Duration::from_millis(10 * c.gc_grace_ms));
        let second = e.gc(&BTreeSet::new()).await.expect("gc after the grace period");
        let deleted: BTreeSet<_> = first.syrups_deleted.iter().chain(&second.syrups_deleted).copied().collect();
        assert!(old_syrups.iter().all(|s| deleted.contains(s)), "the deleted version's Syrups are reclaimed");
        assert!(e.get(b"big", None).await.is_ok(), "the current version is intact");
    });
}
