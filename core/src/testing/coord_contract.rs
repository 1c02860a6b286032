//! The contract of [`Coordination`] as a reusable test suite: every implementation (the embedded
//! store, ZooKeeper) runs the same checks through [`run_all`].
//!
//! Invariants of the suite:
//! - `make` opens a new session on the *same* store each time it is called; the suite drops every
//!   session before it makes the next, so an implementation that allows one session per store at
//!   a time (the embedded one) can run it.
//! - Each check works below its own root `contract/<check name>`, which it clears first with
//!   `delete_tree`, so checks are independent and a store may be reused between runs.
//! - A check that fails panics with the operation, the path and what was expected; `run_all`
//!   prints each check's name before it runs, so the failing one is named in the output.

use crate::{
    coord::{CoordError, Coordination, CreateMode, Fence, Version},
    limits,
};

/// Opens a new session on the store under test.
pub type MakeSession<'a> = dyn FnMut() -> Box<dyn Coordination> + 'a;

/// One check of the contract.
pub type Check = fn(&mut MakeSession<'_>);

/// Every check of the contract, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("create_then_get", create_then_get),
    ("set_and_compare_and_set", set_and_compare_and_set),
    ("delete_with_versions", delete_with_versions),
    ("delete_refuses_entry_with_children", delete_refuses_entry_with_children),
    ("children_are_direct_and_sorted", children_are_direct_and_sorted),
    ("create_adds_missing_parents", create_adds_missing_parents),
    ("put_creates_or_replaces", put_creates_or_replaces),
    ("delete_tree_removes_the_subtree", delete_tree_removes_the_subtree),
    ("ephemeral_entries_end_with_their_session", ephemeral_entries_end_with_their_session),
    ("ephemeral_entries_have_no_children", ephemeral_entries_have_no_children),
    ("persistent_entries_outlive_their_session", persistent_entries_outlive_their_session),
    ("bad_paths_are_refused", bad_paths_are_refused),
    ("data_is_bounded", data_is_bounded),
    ("fenced_writes_need_the_current_token", fenced_writes_need_the_current_token),
    ("sessions_have_distinct_ids", sessions_have_distinct_ids),
];

/// Runs every check of [`CHECKS`] against the store that `make` opens sessions on.
///
/// # Panics
/// When the store breaks the contract.
pub fn run_all(make: &mut MakeSession<'_>) {
    for (name, check) in CHECKS {
        eprintln!("coordination contract: {name}");
        check(make);
    }
}

fn ok<T>(result: Result<T, CoordError>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

/// A session and the check's cleared root.
fn fresh(make: &mut MakeSession<'_>, name: &str) -> (Box<dyn Coordination>, String) {
    let mut s = make();
    let root = format!("contract/{name}");
    ok(s.delete_tree(&root), "clear the check's root");
    assert!(ok(s.get(&root), "get the cleared root").is_none(), "delete_tree left {root}");
    (s, root)
}

fn get(s: &mut dyn Coordination, path: &str) -> Option<(Vec<u8>, Version)> {
    ok(s.get(path), &format!("get {path}"))
}

fn children(s: &mut dyn Coordination, path: &str) -> Vec<String> {
    ok(s.children(path), &format!("children {path}"))
}

fn create(s: &mut dyn Coordination, path: &str, data: &[u8], mode: CreateMode) -> Version {
    ok(s.create(path, data, mode), &format!("create {path}"))
}

/// `create` answers version 0, `get` returns the data as given, a second `create` is `NodeExists`.
pub fn create_then_get(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "create_then_get");
    let s = s.as_mut();
    let a = format!("{root}/a");
    assert_eq!(get(s, &a), None, "get of an absent entry");
    assert_eq!(create(s, &a, b"one", CreateMode::Persistent), 0);
    assert_eq!(get(s, &a), Some((b"one".to_vec(), 0)));
    assert!(matches!(s.create(&a, b"two", CreateMode::Persistent), Err(CoordError::NodeExists(p)) if p == a));
    assert!(matches!(s.create(&a, b"two", CreateMode::Ephemeral), Err(CoordError::NodeExists(p)) if p == a));
    assert_eq!(get(s, &a), Some((b"one".to_vec(), 0)), "a refused create changes nothing");
    let empty = format!("{root}/empty");
    assert_eq!(create(s, &empty, b"", CreateMode::Persistent), 0);
    assert_eq!(get(s, &empty), Some((Vec::new(), 0)));
    let binary = format!("{root}/binary");
    let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    create(s, &binary, &bytes, CreateMode::Persistent);
    assert_eq!(get(s, &binary), Some((bytes, 0)), "data is returned byte for byte");
    let unicode = format!("{root}/ключ-ü");
    create(s, &unicode, b"u", CreateMode::Persistent);
    assert_eq!(get(s, &unicode), Some((b"u".to_vec(), 0)));
}

/// `set` increments the version by one; with an expected version it is a compare-and-set.
pub fn set_and_compare_and_set(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "set_and_compare_and_set");
    let s = s.as_mut();
    let a = format!("{root}/a");
    assert!(matches!(s.set(&a, b"x", None), Err(CoordError::NoNode(p)) if p == a));
    assert!(matches!(s.set(&a, b"x", Some(0)), Err(CoordError::NoNode(p)) if p == a));
    assert_eq!(get(s, &a), None, "set never creates");
    create(s, &a, b"v0", CreateMode::Persistent);
    assert_eq!(ok(s.set(&a, b"v1", None), "set"), 1);
    assert_eq!(ok(s.set(&a, b"v2", Some(1)), "compare-and-set at the current version"), 2);
    assert_eq!(get(s, &a), Some((b"v2".to_vec(), 2)));
    let stale = s.set(&a, b"lost", Some(1));
    assert!(
        matches!(&stale, Err(CoordError::BadVersion { path, expected: 1, found: 2 }) if *path == a),
        "stale compare-and-set: {stale:?}"
    );
    assert!(matches!(s.set(&a, b"lost", Some(3)), Err(CoordError::BadVersion { expected: 3, found: 2, .. })));
    assert_eq!(get(s, &a), Some((b"v2".to_vec(), 2)), "a refused set changes nothing");
    assert_eq!(ok(s.set(&a, b"v2", Some(2)), "set of the same data"), 3, "every set counts, even a no-op");
    assert_eq!(ok(s.set(&a, b"", None), "set to empty"), 4);
    assert_eq!(get(s, &a), Some((Vec::new(), 4)));
}

/// `delete` removes an entry; with an expected version only at that version; a re-created entry
/// starts again at version 0.
pub fn delete_with_versions(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "delete_with_versions");
    let s = s.as_mut();
    let a = format!("{root}/a");
    assert!(matches!(s.delete(&a, None), Err(CoordError::NoNode(p)) if p == a));
    assert!(matches!(s.delete(&a, Some(0)), Err(CoordError::NoNode(_))));
    create(s, &a, b"x", CreateMode::Persistent);
    ok(s.set(&a, b"y", None), "set");
    assert!(matches!(s.delete(&a, Some(0)), Err(CoordError::BadVersion { expected: 0, found: 1, .. })));
    assert_eq!(get(s, &a), Some((b"y".to_vec(), 1)), "a refused delete changes nothing");
    ok(s.delete(&a, Some(1)), "delete at the current version");
    assert_eq!(get(s, &a), None);
    assert!(matches!(s.delete(&a, None), Err(CoordError::NoNode(_))), "a second delete");
    assert_eq!(create(s, &a, b"again", CreateMode::Persistent), 0, "a re-created entry starts at 0");
    ok(s.delete(&a, None), "unconditional delete");
    assert_eq!(get(s, &a), None);
    assert_eq!(children(s, &root), Vec::<String>::new());
}

/// An entry with children (persistent or ephemeral) is not deleted.
pub fn delete_refuses_entry_with_children(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "delete_refuses_entry_with_children");
    let s = s.as_mut();
    let parent = format!("{root}/p");
    let child = format!("{parent}/c");
    create(s, &child, b"", CreateMode::Persistent);
    assert!(matches!(s.delete(&parent, None), Err(CoordError::NotEmpty(p)) if p == parent));
    assert!(matches!(s.delete(&parent, Some(0)), Err(CoordError::NotEmpty(_))));
    ok(s.delete(&child, None), "delete the child");
    let eph = format!("{parent}/e");
    create(s, &eph, b"", CreateMode::Ephemeral);
    assert!(matches!(s.delete(&parent, None), Err(CoordError::NotEmpty(_))), "an ephemeral child counts");
    ok(s.delete(&eph, None), "delete the ephemeral child");
    ok(s.delete(&parent, Some(0)), "delete the now empty parent");
    assert_eq!(get(s, &parent), None);
}

/// `children` names the direct children only, sorted by byte order.
pub fn children_are_direct_and_sorted(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "children_are_direct_and_sorted");
    let s = s.as_mut();
    let dir = format!("{root}/dir");
    let names = ["b", "a", "B", "10", "9", "a-b", "ab", "é", "z", "a.b"];
    for n in names {
        create(s, &format!("{dir}/{n}"), n.as_bytes(), CreateMode::Persistent);
    }
    create(s, &format!("{dir}/a/grandchild"), b"", CreateMode::Persistent);
    create(s, &format!("{dir}-sibling"), b"", CreateMode::Persistent);
    create(s, &format!("{dir}/eph"), b"", CreateMode::Ephemeral);
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).chain(["eph".to_owned()]).collect();
    expected.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    assert_eq!(children(s, &dir), expected);
    assert_eq!(children(s, &format!("{dir}/a")), vec!["grandchild".to_owned()]);
    assert_eq!(children(s, &format!("{dir}/z")), Vec::<String>::new(), "a leaf has no children");
    let absent = format!("{dir}/absent");
    assert!(matches!(s.children(&absent), Err(CoordError::NoNode(p)) if p == absent));
    ok(s.delete(&format!("{dir}/b"), None), "delete a child");
    expected.retain(|n| n != "b");
    assert_eq!(children(s, &dir), expected, "a deleted child is no longer listed");
}

/// `create` adds missing parents as empty persistent entries at version 0 and leaves existing
/// ones alone.
pub fn create_adds_missing_parents(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "create_adds_missing_parents");
    let top = format!("{root}/x");
    let mid = format!("{top}/y");
    let leaf = format!("{mid}/z");
    assert_eq!(create(s.as_mut(), &leaf, b"leaf", CreateMode::Persistent), 0);
    for parent in [root.as_str(), top.as_str(), mid.as_str()] {
        assert_eq!(get(s.as_mut(), parent), Some((Vec::new(), 0)), "parent {parent}");
    }
    assert_eq!(children(s.as_mut(), &top), vec!["y".to_owned()]);
    ok(s.set(&top, b"kept", None), "set a parent");
    create(s.as_mut(), &format!("{mid}/w"), b"", CreateMode::Persistent);
    assert_eq!(get(s.as_mut(), &top), Some((b"kept".to_vec(), 1)), "an existing parent is not touched");
    create(s.as_mut(), &format!("{top}/e/f/g"), b"", CreateMode::Ephemeral);
    drop(s);
    // Parents are persistent even when the entry below them was ephemeral.
    let mut s = make();
    assert_eq!(get(s.as_mut(), &format!("{top}/e/f")), Some((Vec::new(), 0)));
    assert_eq!(get(s.as_mut(), &format!("{top}/e/f/g")), None);
    assert_eq!(get(s.as_mut(), &leaf), Some((b"leaf".to_vec(), 0)));
}

/// `put` creates an absent entry at version 0 and replaces a present one whatever its version.
pub fn put_creates_or_replaces(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "put_creates_or_replaces");
    let s = s.as_mut();
    let a = format!("{root}/deep/a");
    assert_eq!(ok(s.put(&a, b"one"), "put of an absent entry"), 0);
    assert_eq!(ok(s.put(&a, b"two"), "put of a present entry"), 1);
    assert_eq!(ok(s.put(&a, b"three"), "put again"), 2);
    assert_eq!(get(s, &a), Some((b"three".to_vec(), 2)));
}

/// `delete_tree` removes an entry and everything below it, and nothing else; an absent entry is
/// no error.
pub fn delete_tree_removes_the_subtree(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "delete_tree_removes_the_subtree");
    let s = s.as_mut();
    let tree = format!("{root}/t");
    for leaf in ["a/b/c", "a/d", "e", "f/g/h/i"] {
        create(s, &format!("{tree}/{leaf}"), leaf.as_bytes(), CreateMode::Persistent);
    }
    create(s, &format!("{tree}/a/eph"), b"", CreateMode::Ephemeral);
    create(s, &format!("{root}/t-next"), b"neighbour", CreateMode::Persistent);
    create(s, &format!("{root}/tt"), b"neighbour", CreateMode::Persistent);
    ok(s.delete_tree(&tree), "delete_tree");
    for gone in ["", "/a", "/a/b", "/a/b/c", "/a/d", "/a/eph", "/e", "/f/g/h/i"] {
        assert_eq!(get(s, &format!("{tree}{gone}")), None, "{tree}{gone} survived delete_tree");
    }
    assert_eq!(get(s, &format!("{root}/t-next")), Some((b"neighbour".to_vec(), 0)));
    assert_eq!(get(s, &format!("{root}/tt")), Some((b"neighbour".to_vec(), 0)));
    assert_eq!(children(s, &root), vec!["t-next".to_owned(), "tt".to_owned()]);
    ok(s.delete_tree(&tree), "delete_tree of an absent entry");
    let leaf = format!("{root}/tt");
    ok(s.delete_tree(&leaf), "delete_tree of a leaf");
    assert_eq!(get(s, &leaf), None);
}

/// Ephemeral entries behave like others within their session and vanish when it ends.
pub fn ephemeral_entries_end_with_their_session(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "ephemeral_entries_end_with_their_session");
    let members = format!("{root}/members");
    let one = format!("{members}/1");
    let two = format!("{members}/2");
    assert_eq!(create(s.as_mut(), &one, b"addr", CreateMode::Ephemeral), 0);
    create(s.as_mut(), &two, b"addr", CreateMode::Ephemeral);
    assert_eq!(get(s.as_mut(), &one), Some((b"addr".to_vec(), 0)));
    assert_eq!(children(s.as_mut(), &members), vec!["1".to_owned(), "2".to_owned()]);
    assert_eq!(ok(s.set(&one, b"addr2", Some(0)), "compare-and-set of an ephemeral entry"), 1);
    assert!(matches!(s.set(&one, b"x", Some(0)), Err(CoordError::BadVersion { .. })));
    assert_eq!(get(s.as_mut(), &one), Some((b"addr2".to_vec(), 1)));
    ok(s.delete(&two, Some(0)), "delete an ephemeral entry");
    drop(s);
    let mut s = make();
    assert_eq!(get(s.as_mut(), &one), None, "an ephemeral entry outlived its session");
    assert_eq!(children(s.as_mut(), &members), Vec::<String>::new());
    assert_eq!(get(s.as_mut(), &members), Some((Vec::new(), 0)), "its persistent parent stays");
    assert_eq!(create(s.as_mut(), &one, b"again", CreateMode::Ephemeral), 0, "a new session may take the name");
    drop(s);
    let mut s = make();
    assert_eq!(get(s.as_mut(), &one), None);
}

/// Nothing can be created below an ephemeral entry (`BadPath`), as in ZooKeeper.
pub fn ephemeral_entries_have_no_children(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "ephemeral_entries_have_no_children");
    let s = s.as_mut();
    let eph = format!("{root}/lease");
    create(s, &eph, b"", CreateMode::Ephemeral);
    for (below, mode) in [("c", CreateMode::Persistent), ("c", CreateMode::Ephemeral), ("c/d", CreateMode::Persistent)]
    {
        let path = format!("{eph}/{below}");
        let r = s.create(&path, b"", mode);
        assert!(matches!(&r, Err(CoordError::BadPath(p)) if *p == path), "create below an ephemeral: {r:?}");
    }
    assert_eq!(children(s, &eph), Vec::<String>::new());
    assert_eq!(get(s, &format!("{eph}/c")), None);
}

/// Persistent data, versions and deletions are kept across sessions.
pub fn persistent_entries_outlive_their_session(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "persistent_entries_outlive_their_session");
    let a = format!("{root}/a");
    let b = format!("{root}/b");
    create(s.as_mut(), &a, b"a0", CreateMode::Persistent);
    ok(s.set(&a, b"a1", Some(0)), "set a");
    ok(s.set(&a, b"a2", Some(1)), "set a again");
    create(s.as_mut(), &b, b"b0", CreateMode::Persistent);
    ok(s.delete(&b, Some(0)), "delete b");
    drop(s);
    let mut s = make();
    assert_eq!(get(s.as_mut(), &a), Some((b"a2".to_vec(), 2)));
    assert_eq!(get(s.as_mut(), &b), None);
    assert!(matches!(s.set(&a, b"x", Some(1)), Err(CoordError::BadVersion { expected: 1, found: 2, .. })));
    assert_eq!(ok(s.set(&a, b"a3", Some(2)), "compare-and-set in a new session"), 3);
}

/// Every operation refuses an invalid path with `BadPath` naming it, and changes nothing.
pub fn bad_paths_are_refused(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "bad_paths_are_refused");
    let s = s.as_mut();
    let long = format!("{root}/{}", "x".repeat(limits::COORD_PATH_BYTES_MAX));
    let bad = [
        String::new(),
        "/".to_owned(),
        format!("/{root}"),
        format!("{root}/"),
        format!("{root}//a"),
        format!("{root}/./a"),
        format!("{root}/.."),
        format!("{root}/a\0b"),
        format!("{root}/a\nb"),
        long,
    ];
    for path in &bad {
        let is_bad = |r: Result<(), CoordError>| matches!(r, Err(CoordError::BadPath(p)) if p == *path);
        assert!(is_bad(s.get(path).map(drop)), "get {path:?}");
        assert!(is_bad(s.create(path, b"", CreateMode::Persistent).map(drop)), "create {path:?}");
        assert!(is_bad(s.create(path, b"", CreateMode::Ephemeral).map(drop)), "create ephemeral {path:?}");
        assert!(is_bad(s.set(path, b"", None).map(drop)), "set {path:?}");
        assert!(is_bad(s.delete(path, None)), "delete {path:?}");
        assert!(is_bad(s.children(path).map(drop)), "children {path:?}");
        assert!(is_bad(s.put(path, b"").map(drop)), "put {path:?}");
        assert!(is_bad(s.delete_tree(path)), "delete_tree {path:?}");
    }
    assert_eq!(get(s, &root), None, "refused paths created nothing");
    // The longest valid path works.
    let prefix = format!("{root}/");
    let longest = format!("{prefix}{}", "y".repeat(limits::COORD_PATH_BYTES_MAX - prefix.len()));
    assert_eq!(longest.len(), limits::COORD_PATH_BYTES_MAX);
    assert_eq!(create(s, &longest, b"", CreateMode::Persistent), 0);
    assert_eq!(get(s, &longest), Some((Vec::new(), 0)));
}

/// Data up to `COORD_DATA_BYTES_MAX` is kept; larger data is refused and changes nothing.
pub fn data_is_bounded(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "data_is_bounded");
    let s = s.as_mut();
    let big: Vec<u8> = (0..limits::COORD_DATA_BYTES_MAX).map(|i| (i % 251) as u8).collect();
    let over = vec![7u8; limits::COORD_DATA_BYTES_MAX + 1];
    let a = format!("{root}/a");
    assert!(s.create(&a, &over, CreateMode::Persistent).is_err(), "create with data over the limit");
    assert!(s.create(&a, &over, CreateMode::Ephemeral).is_err(), "ephemeral create with data over the limit");
    assert_eq!(get(s, &a), None, "a refused create changes nothing");
    assert_eq!(create(s, &a, &big, CreateMode::Persistent), 0);
    assert!(s.set(&a, &over, None).is_err(), "set with data over the limit");
    assert!(s.put(&a, &over).is_err(), "put with data over the limit");
    assert_eq!(get(s, &a), Some((big, 0)), "a refused set changes nothing");
}

/// A fenced write happens only while the fence entry is at the writer's token, and a refused one
/// changes nothing; creating through a fence adds missing parents; deleting an absent entry
/// through a holding fence is fine.
pub fn fenced_writes_need_the_current_token(make: &mut MakeSession<'_>) {
    let (mut s, root) = fresh(make, "fenced_writes_need_the_current_token");
    let s = s.as_mut();
    let fence_path = format!("{root}/partition");
    let target = format!("{root}/deep/refs");
    let token = create(s, &fence_path, b"lease record", CreateMode::Persistent);
    let held = Fence { path: fence_path.clone(), version: token };
    assert_eq!(ok(s.put_fenced(&held, &target, b"one"), "fenced put that creates"), 0);
    assert_eq!(ok(s.put_fenced(&held, &target, b"two"), "fenced put that replaces"), 1);
    // Another holder takes the lease: the fence entry moves on.
    let newer = ok(s.set(&fence_path, b"next holder", Some(token)), "bump the fence");
    assert_eq!(newer, token + 1);
    let refused = s.put_fenced(&held, &target, b"stale");
    assert!(
        matches!(&refused, Err(CoordError::Fenced { path, token: t, found: Some(f) }) if *path == fence_path && *t == token && *f == newer),
        "a stale token writes: {refused:?}"
    );
    let refused = s.put_fenced(&held, &format!("{root}/new"), b"stale");
    assert!(matches!(refused, Err(CoordError::Fenced { .. })), "a stale token creates: {refused:?}");
    assert_eq!(get(s, &format!("{root}/new")), None, "a refused fenced create created nothing");
    let refused = s.delete_fenced(&held, &target);
    assert!(matches!(refused, Err(CoordError::Fenced { .. })), "a stale token deletes: {refused:?}");
    assert_eq!(get(s, &target), Some((b"two".to_vec(), 1)), "refused fenced writes changed nothing");
    let current = Fence { path: fence_path.clone(), version: newer };
    ok(s.delete_fenced(&current, &target), "fenced delete with the current token");
    assert_eq!(get(s, &target), None);
    ok(s.delete_fenced(&current, &target), "fenced delete of an absent entry");
    let gone = Fence { path: format!("{root}/absent-fence"), version: 0 };
    let refused = s.put_fenced(&gone, &target, b"x");
    assert!(matches!(refused, Err(CoordError::Fenced { found: None, .. })), "an absent fence holds: {refused:?}");
}

/// Every session has an id, successive sessions differ, and the session watch reports the live
/// one as holding.
pub fn sessions_have_distinct_ids(make: &mut MakeSession<'_>) {
    let mut first = make();
    let one = ok(first.session_id(), "session id");
    assert_eq!(ok(first.session_id(), "session id again"), one, "a live session keeps its id");
    let watch = first.session_watch();
    assert!(watch.holds(one), "the watch holds the live session");
    drop(first);
    let mut second = make();
    let two = ok(second.session_id(), "second session id");
    assert_ne!(one, two, "a new session has a new id");
    assert!(second.session_watch().holds(two));
    assert!(!second.session_watch().holds(one), "the watch does not hold an ended session");
}
