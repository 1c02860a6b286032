//! The embedded coordination store: durable, file-backed, inside the data directory; one node.
//!
//! (Placeholder signatures: the implementation lands with the coordination work.)

use std::path::Path;

use super::{CoordError, Coordination, CreateMode, Version};

/// The embedded store. Its session is the value: ephemeral entries vanish when it is dropped
/// (and are never written to disk).
#[derive(Debug)]
pub struct EmbeddedCoordination {
    _private: (),
}

impl EmbeddedCoordination {
    /// Opens (or creates) the store in `dir`, replaying its log.
    ///
    /// # Errors
    /// `Store` when its files cannot be read or are damaged.
    pub fn open(dir: &Path) -> Result<EmbeddedCoordination, CoordError> {
        let _ = dir;
        Err(CoordError::Store("embedded coordination not implemented yet".into()))
    }
}

impl Coordination for EmbeddedCoordination {
    fn get(&mut self, path: &str) -> Result<Option<(Vec<u8>, Version)>, CoordError> {
        Err(CoordError::BadPath(path.into()))
    }
    fn create(&mut self, path: &str, _data: &[u8], _mode: CreateMode) -> Result<Version, CoordError> {
        Err(CoordError::BadPath(path.into()))
    }
    fn set(&mut self, path: &str, _data: &[u8], _expected: Option<Version>) -> Result<Version, CoordError> {
        Err(CoordError::BadPath(path.into()))
    }
    fn delete(&mut self, path: &str, _expected: Option<Version>) -> Result<(), CoordError> {
        Err(CoordError::BadPath(path.into()))
    }
    fn children(&mut self, path: &str) -> Result<Vec<String>, CoordError> {
        Err(CoordError::BadPath(path.into()))
    }
}
