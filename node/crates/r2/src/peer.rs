//! The client half of the `R2Peer` service (the server half is [`crate::server`]), and where
//! chunks go: which members hold a chunk, writing it to them, reading it from the nearest.

use super::{ChunkId, R2Error, R2};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use nimbus_cluster::peers::{ShapedChannel, MAX_MESSAGE_BYTES};
use nimbus_cluster::Member;
use nimbus_proto::peer::r2_peer_client::R2PeerClient;
use nimbus_proto::peer::{R2Chunk, R2ChunkRequest};
use std::time::Duration;

/// How long one chunk transfer to or from a peer may take (a 4 MiB chunk moves in
/// milliseconds; a peer this slow is treated as down and the next holder is asked).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// The live members ranked for `id`: its holders first (the top [`crate::chunks::COPIES`]),
/// then the members a write falls back to when a holder is down.
pub(crate) fn ranked(id: &ChunkId, members: &[Member]) -> Vec<Member> {
    let names: Vec<&str> = members.iter().map(|m| m.node_id.as_str()).collect();
    nimbus_cluster::placement::rank(id.as_bytes(), &names, names.len())
        .into_iter()
        .filter_map(|name| members.iter().find(|m| m.node_id == name).cloned())
        .collect()
}

impl R2 {
    /// This node and every peer gossip says is alive.
    pub(crate) async fn live_members(&self) -> Vec<Member> {
        let mut members = vec![self.inner.membership.me().clone()];
        match self.inner.membership.alive_peers().await {
            Ok(peers) => members.extend(peers),
            Err(e) => tracing::warn!("r2: membership unavailable, using this node alone: {e}"),
        }
        members
    }

    fn client(&self, member: &Member) -> Result<R2PeerClient<ShapedChannel>, R2Error> {
        let channel =
            self.inner.peers.shaped(member).map_err(|e| R2Error::Unavailable(format!("{}: {e}", member.node_id)))?;
        Ok(R2PeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    fn is_me(&self, member: &Member) -> bool {
        member.node_id == self.inner.membership.me().node_id
    }

    /// Stores the chunk on one member, fsynced there before this returns. `id` was computed
    /// here from `data` (a peer checks it again).
    pub(crate) async fn put_chunk_on(&self, member: &Member, id: ChunkId, data: Bytes) -> Result<(), R2Error> {
        if self.is_me(member) {
            let chunks = self.inner.chunks.clone();
            return tokio::task::spawn_blocking(move || chunks.put_computed(&id, &data))
                .await
                .map_err(|e| R2Error::Internal(e.to_string()))?;
        }
        let mut client = self.client(member)?;
        let mut request = self.inner.peers.request(R2Chunk { id: id.as_bytes().to_vec(), data });
        request.set_timeout(TRANSFER_TIMEOUT);
        client.r2_put_chunk(request).await.map(|_| ()).map_err(|status| {
            R2Error::Unavailable(format!("storing chunk {id} on {}: {}", member.node_id, status.message()))
        })
    }

    /// The chunk's bytes from one member, checked against the id here too.
    pub(crate) async fn get_chunk_from(&self, member: &Member, id: ChunkId) -> Result<Bytes, R2Error> {
        if self.is_me(member) {
            let chunks = self.inner.chunks.clone();
            return tokio::task::spawn_blocking(move || chunks.get(&id))
                .await
                .map_err(|e| R2Error::Internal(e.to_string()))?
                .map(Bytes::from);
        }
        let mut client = self.client(member)?;
        let mut request = self.inner.peers.request(R2ChunkRequest { id: id.as_bytes().to_vec() });
        request.set_timeout(TRANSFER_TIMEOUT);
        let chunk = client.r2_get_chunk(request).await.map_err(|status| match status.code() {
            tonic::Code::NotFound => R2Error::ChunkMissing(id.to_string()),
            _ => R2Error::Unavailable(format!("reading chunk {id} from {}: {}", member.node_id, status.message())),
        })?;
        let data = chunk.into_inner().data;
        let actual = ChunkId::of(&data);
        if actual != id {
            return Err(R2Error::ChunkCorrupt { id: id.to_string(), actual: actual.to_string() });
        }
        Ok(data)
    }

    /// Writes a chunk to its holders: returns once `required` copies are fsynced (two, or
    /// every live member when fewer are alive); the other holders are written in the
    /// background (the repair scan finds any that fails). A holder that fails is replaced by
    /// the next member in the ranking.
    pub(crate) async fn store_chunk(&self, id: ChunkId, data: Bytes) -> Result<(), R2Error> {
        let members = self.live_members().await;
        let ranking = ranked(&id, &members);
        let required = super::REQUIRED_COPIES.min(ranking.len());
        let copies = super::chunks::COPIES.min(ranking.len());
        let mut candidates = ranking.into_iter();
        let write = |member: Member| {
            let (r2, data) = (self.clone(), data.clone());
            async move { (member.node_id.clone(), r2.put_chunk_on(&member, id, data).await) }
        };
        let mut writes = FuturesUnordered::new();
        for member in candidates.by_ref().take(copies) {
            writes.push(write(member));
        }
        let (mut stored, mut errors) = (0, Vec::new());
        while stored < required {
            match writes.next().await {
                Some((_, Ok(()))) => stored += 1,
                Some((node, Err(e))) => {
                    tracing::debug!(%id, node, "chunk write failed: {e}");
                    errors.push(e.to_string());
                    if let Some(member) = candidates.next() {
                        writes.push(write(member));
                    }
                }
                None => {
                    return Err(R2Error::Unavailable(format!(
                        "chunk {id}: {stored} of {required} copies written ({})",
                        errors.join("; ")
                    )))
                }
            }
        }
        if !writes.is_empty() {
            // The remaining copies finish on their own (each bounded by its timeout).
            tokio::spawn(async move { while writes.next().await.is_some() {} });
        }
        Ok(())
    }

    /// A chunk's bytes from the nearest live member that has them: this node, then holders
    /// in this region, then other holders, then any other live member. Every copy is
    /// hash-checked; a damaged or missing one is skipped.
    pub(crate) async fn read_chunk(&self, id: ChunkId) -> Result<Bytes, R2Error> {
        let members = self.live_members().await;
        let ranking = ranked(&id, &members);
        let copies = super::chunks::COPIES.min(ranking.len());
        let (holders, others) = ranking.split_at(copies);
        let me = self.inner.membership.me();
        let mut order: Vec<&Member> = holders.iter().collect();
        order.sort_by_key(|m| (m.node_id != me.node_id, m.region != me.region));
        if !order.iter().any(|m| m.node_id == me.node_id) && self.inner.chunks.contains(&id) {
            order.insert(0, me);
        }
        let mut failures = Vec::new();
        for member in order.into_iter().chain(others.iter()) {
            match self.get_chunk_from(member, id).await {
                Ok(data) => return Ok(data),
                Err(e) => failures.push(format!("{}: {e}", member.node_id)),
            }
        }
        Err(R2Error::Unavailable(format!("no live member returned chunk {id} ({})", failures.join("; "))))
    }
}
