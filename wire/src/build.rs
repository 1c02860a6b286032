//! Builders of schema pieces that both sides of the protocol write (the node's replies and the
//! client's requests), so the two never encode the same table differently.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use crate::fb;

/// User metadata as a vector of `KeyValue` tables, or `None` (the field left out) when empty.
pub fn key_values<'a, K: AsRef<str>, V: AsRef<str>>(
    fbb: &mut FlatBufferBuilder<'a>,
    meta: impl IntoIterator<Item = (K, V)>,
) -> Option<WIPOffset<Vector<'a, ForwardsUOffset<fb::KeyValue<'a>>>>> {
    let kvs: Vec<_> = meta
        .into_iter()
        .map(|(k, v)| {
            let key = Some(fbb.create_string(k.as_ref()));
            let value = Some(fbb.create_string(v.as_ref()));
            fb::KeyValue::create(fbb, &fb::KeyValueArgs { key, value })
        })
        .collect();
    if kvs.is_empty() {
        return None;
    }
    Some(fbb.create_vector(&kvs))
}
