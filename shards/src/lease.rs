//! Membership and partition leases on any coordination store: the two protocols every node
//! follows (format in docs/format.md, "Entry encodings").
//!
//! Invariants:
//! - A node replaces only entries of its own earlier session (`previous`, remembered in its data
//!   directory); an entry of any other session is another live process and is never taken over.
//! - A lease's fencing token is the version its taking gave `boxes/<box>/partitions/<p>`: tokens
//!   of successive leases of a partition strictly increase, whoever takes them.
//! - Every step is a single-entry call with a version check, so two takers racing end with one
//!   holder; the loser starts over (at most [`LEASE_ATTEMPTS_MAX`] times).

use candybox_core::coord::{paths, CoordError, Coordination, CreateMode, LeaseEntry, LeaseRecord, MemberEntry};

/// Attempts at taking a partition's lease (or registering) when another taker races it.
pub const LEASE_ATTEMPTS_MAX: u32 = 4;

/// The answer to taking a partition's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// This node holds it, in the current session, with this fencing token.
    Held(LeaseEntry),
    /// Another node holds it.
    Other {
        /// The holder.
        node: u16,
    },
}

/// Creates `members/<node>` (ephemeral) for `entry.session`, replacing an entry of this node's
/// `previous` session (a restarted node: its old session's entries linger until they expire).
///
/// # Errors
/// `NodeExists` (naming the holder) when another session holds the entry: another live process
/// uses this node id, or a process of this node that this data directory does not remember;
/// store failures.
pub fn register_member(
    store: &mut dyn Coordination,
    entry: &MemberEntry,
    previous: Option<u64>,
) -> Result<(), CoordError> {
    let path = paths::member(entry.node);
    for _ in 0..LEASE_ATTEMPTS_MAX {
        match store.create(&path, &entry.encode(), CreateMode::Ephemeral) {
            Ok(_) => return Ok(()),
            Err(CoordError::NodeExists(_)) => {}
            Err(e) => return Err(e),
        }
        if let Some((data, v)) = store.get(&path)? {
            let holder = MemberEntry::decode(&data).ok();
            let held_by = holder.as_ref().map(|m| m.session);
            if held_by == Some(entry.session) {
                return Ok(());
            }
            if held_by.is_none() || held_by != previous {
                let who = holder
                    .map_or("an undecodable entry".to_string(), |m| format!("session {:#x} at {}", m.session, m.addr));
                return Err(CoordError::NodeExists(format!("{path} (held by {who})")));
            }
            tracing::info!(node = entry.node, "replacing the member entry of this node's earlier session");
            match store.delete(&path, Some(v)) {
                Ok(()) | Err(CoordError::NoNode(_)) | Err(CoordError::BadVersion { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Err(CoordError::Unavailable(format!("{path}: contended")))
}

/// Takes (or confirms) the lease of a partition for `node` in the current session: the owner
/// entry names this node and session, and the fencing token is the partition entry's version,
/// bumped when the lease is taken. An owner entry of this node's earlier session is replaced.
///
/// # Errors
/// Store failures; `Unavailable` when the lease stays contended.
pub fn take_lease(
    store: &mut dyn Coordination,
    box_name: &str,
    partition: u16,
    node: u16,
) -> Result<LeaseAnswer, CoordError> {
    let session = store.session_id()?;
    let owner = paths::partition_owner(box_name, partition);
    let record = paths::partition(box_name, partition);
    for _ in 0..LEASE_ATTEMPTS_MAX {
        if let Some((data, v)) = store.get(&owner)? {
            match LeaseEntry::decode(&data) {
                Ok(l) if l.node == node && l.session == session => return Ok(LeaseAnswer::Held(l)),
                Ok(l) if l.node != node => return Ok(LeaseAnswer::Other { node: l.node }),
                // This node's lease of an earlier session (or damage): replace it.
                _ => match store.delete(&owner, Some(v)) {
                    Ok(()) | Err(CoordError::NoNode(_)) | Err(CoordError::BadVersion { .. }) => continue,
                    Err(e) => return Err(e),
                },
            }
        }
        let version = match store.get(&record)? {
            Some((_, v)) => v,
            None => match store.create(&record, &[], CreateMode::Persistent) {
                Ok(v) => v,
                Err(CoordError::NodeExists(_)) => continue,
                Err(e) => return Err(e),
            },
        };
        let taken = LeaseRecord { node, taken_ms: candybox_core::runtime::wall_ms() };
        let token = match store.set(&record, &taken.encode(), Some(version)) {
            Ok(t) => t,
            Err(CoordError::BadVersion { .. }) => continue,
            Err(e) => return Err(e),
        };
        let lease = LeaseEntry { node, session, token };
        match store.create(&owner, &lease.encode(), CreateMode::Ephemeral) {
            Ok(_) => return Ok(LeaseAnswer::Held(lease)),
            Err(CoordError::NodeExists(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CoordError::Unavailable(format!("lease of {box_name}/{partition}: contended")))
}
