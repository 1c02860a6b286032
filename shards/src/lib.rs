//! The parts of the node that its integration tests and tools use as a library: the ZooKeeper
//! implementation of the coordination interface, and the membership and lease protocols. The node
//! itself is the `candyboxd` binary.

pub mod lease;
pub mod zk;
