//! Spreading KV writes to every replica, and repairing what spreading missed.
//!
//! Three paths, fastest first:
//! - **rumors**: a local write small enough for a datagram rides foca's custom broadcasts
//!   ([`KvRumors`]); each node that finds it newer applies it and passes it on, at once to a
//!   few random members and then piggybacked, until everyone has it.
//! - **push**: a larger write is pushed over gRPC to every live member, and so is every
//!   write while the node writes faster than rumors can carry (batched, one stream per peer).
//! - **anti-entropy**: every cycle the node compares bucket digests with one random live
//!   peer, then the versions in the buckets that differ, and pulls and pushes the entries
//!   each side lacks. This repairs lost datagrams, full queues and partitions. A replica that
//!   is empty or far behind first streams a bulk copy of the peer's.
//!
//! All paths end in [`KvStore::merge`], so the order and repetition of deliveries does not
//! matter. The same loop purges expired entries and old tombstones, and syncs the WAL.

use super::digest::{differing, BUCKETS};
use super::wire::{decode_rumor, encode_rumor, from_key_version, from_wire, key_version, to_wire};
use super::{Change, Changes, Entry, KvError, KvStore};
use nimbus_cluster::peers::PeerChannels;
use nimbus_cluster::{Member, Membership, MembershipEvent, RumorError, RumorId, Rumors};
use nimbus_proto::peer::{FetchKvRequest, KvBucketVersionsRequest, KvDigestsRequest, KvEntry, KvSnapshotRequest};
use nimbus_util::metrics::Metrics;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often and how long; see `KvConfig`.
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    pub anti_entropy_every: Duration,
    pub tombstone_grace: Duration,
    pub purge_every: Duration,
    pub wal_sync_every: Duration,
}

/// Local writes taken from the queue at once.
const SPREAD_BATCH: usize = 1024;
/// A batch with more writes than this is pushed rather than gossiped.
const MAX_RUMORS_PER_BATCH: usize = 32;
/// Above this many rumors in flight, new writes are pushed rather than gossiped.
const MAX_RUMOR_BACKLOG: usize = 256;
/// A peer that takes longer than this for one push is left to anti-entropy.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Buckets compared per request in an anti-entropy round; a peer asking for more (after
/// duplicates are dropped) is refused.
pub const BUCKETS_PER_REQUEST: usize = 64;
/// Keys fetched per request in an anti-entropy round; a peer asking for more is refused.
pub const KEYS_PER_FETCH: usize = 1024;

/// Applies an entry that came from a peer; counts it by path, and measures how long the
/// write took to get here when it came straight from its writer.
pub fn apply_remote(kv: &KvStore, metrics: &Metrics, wire: KvEntry, path: &str) -> Result<bool, KvError> {
    let (namespace, key, entry) = from_wire(wire);
    apply_entry(kv, metrics, &namespace, &key, &entry, path)
}

fn apply_entry(
    kv: &KvStore,
    metrics: &Metrics,
    namespace: &str,
    key: &str,
    entry: &Entry,
    path: &str,
) -> Result<bool, KvError> {
    let won = match kv.merge(namespace, key, entry) {
        Ok(won) => won,
        // A peer's bad entry (a far-future clock, a limit broken) is skipped, not fatal to
        // the rest of the batch it came in.
        Err(e) if e.is_client_error() => {
            tracing::warn!(%namespace, key = %key.escape_debug(), path, "refused a peer's KV entry: {e}");
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    if won {
        metrics.kv_applied(path).inc();
        if path == "gossip" || path == "push" {
            metrics.kv_replication_lag.observe(lag_secs(entry));
        }
    }
    Ok(won)
}

fn lag_secs(entry: &Entry) -> f64 {
    let written_ms = entry.version.hlc >> super::hlc::LOGICAL_BITS;
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    now_ms.saturating_sub(written_ms) as f64 / 1000.0
}

/// KV's side of the gossip rumors.
pub struct KvRumors {
    pub kv: KvStore,
    pub metrics: Arc<Metrics>,
}

fn rumor_id(namespace: &str, key: &str, entry: &Entry) -> RumorId {
    RumorId { subject: super::entry::storage_key(namespace, key), order: entry.version.to_order_bytes() }
}

impl Rumors for KvRumors {
    fn identify(&self, data: &[u8]) -> Result<RumorId, RumorError> {
        let (namespace, key, entry) = decode_rumor(data).map_err(|e| RumorError(e.to_string()))?;
        Ok(rumor_id(&namespace, &key, &entry))
    }

    fn apply(&self, data: &[u8]) -> Result<Option<RumorId>, RumorError> {
        let (namespace, key, entry) = decode_rumor(data).map_err(|e| RumorError(e.to_string()))?;
        match apply_entry(&self.kv, &self.metrics, &namespace, &key, &entry, "gossip") {
            Ok(true) => Ok(Some(rumor_id(&namespace, &key, &entry))),
            Ok(false) => Ok(None),
            Err(e) => Err(RumorError(e.to_string())),
        }
    }
}

/// A replica with fewer entries than this, and less than half a peer's, is copied in bulk
/// rather than repaired bucket by bucket.
const FEW_ENTRIES: u64 = 64;

/// The replication tasks' shared state; cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    kv: KvStore,
    membership: Membership,
    peers: PeerChannels,
    metrics: Arc<Metrics>,
    settings: ReplicationSettings,
    /// The store was empty when the node started (a new node, or a wiped disk) and no
    /// exchange has completed since: the first one with a peer that holds more copies in
    /// bulk, even if a few gossip rumors arrived first.
    started_empty: Arc<std::sync::atomic::AtomicBool>,
}

fn peer_error(peer: &Member, reason: impl std::fmt::Display) -> KvError {
    KvError::Peer { peer: peer.node_id.clone(), reason: reason.to_string() }
}

type Client = nimbus_proto::peer::kv_peer_client::KvPeerClient<nimbus_cluster::peers::ShapedChannel>;

impl Replicator {
    pub fn new(
        kv: KvStore,
        membership: Membership,
        peers: PeerChannels,
        metrics: Arc<Metrics>,
        settings: ReplicationSettings,
    ) -> Result<Self, KvError> {
        if let Some(last) = kv.check_absence(settings.tombstone_grace.as_millis() as u64)? {
            tracing::warn!(
                last_sync_ms = last >> super::hlc::LOGICAL_BITS,
                "kv: this replica was away longer than the tombstone grace; entries peers lack will be dropped, not pushed"
            );
        }
        let started_empty = Arc::new(std::sync::atomic::AtomicBool::new(kv.digests().entries() == 0));
        Ok(Replicator { kv, membership, peers, metrics, settings, started_empty })
    }

    /// Spreads local writes until shutdown: rumors for small ones, pushes for large ones.
    pub async fn spread_changes(self, mut changes: Changes, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(SPREAD_BATCH);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = changes.recv_many(&mut batch, SPREAD_BATCH) => received,
            };
            if received == 0 {
                return;
            }
            self.spread(std::mem::take(&mut batch)).await;
        }
    }

    /// Sends a batch of local writes on. A trickle goes by rumor (large entries by push);
    /// under load — a full batch, or foca still busy with earlier rumors — the whole batch is
    /// pushed to every live peer in one stream each, and the next batch waits for it, so
    /// batches grow with the load instead of the queue.
    async fn spread(&self, batch: Vec<Change>) {
        let busy = batch.len() > MAX_RUMORS_PER_BATCH || self.membership.rumor_backlog() > MAX_RUMOR_BACKLOG;
        let mut push = Vec::new();
        for Change { namespace, key, entry } in batch {
            match encode_rumor(&namespace, &key, &entry) {
                Some(rumor) if !busy => {
                    if !self.membership.broadcast(rumor.into()) {
                        self.metrics.kv_outbox_dropped.inc();
                    }
                }
                _ => push.push(to_wire(&namespace, &key, &entry)),
            }
        }
        if push.is_empty() {
            return;
        }
        let peers = match self.membership.alive_peers().await {
            Ok(peers) => peers,
            Err(e) => return tracing::warn!("kv push: {e}"),
        };
        let pushes = peers.iter().map(|peer| async {
            match tokio::time::timeout(PUSH_TIMEOUT, self.push(peer, push.clone())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!("kv push (anti-entropy will retry): {e}"),
                Err(_) => tracing::debug!(peer = %peer.node_id, "kv push timed out (anti-entropy will retry)"),
            }
        });
        futures::future::join_all(pushes).await;
    }

    /// A request to `peer`, refused while fault injection cuts it off: checked before every
    /// call (and every streamed message), so a partition also stops an exchange in flight.
    fn request<T>(&self, peer: &Member, message: T) -> Result<tonic::Request<T>, KvError> {
        self.reachable(peer)?;
        Ok(self.peers.request(message))
    }

    fn reachable(&self, peer: &Member) -> Result<(), KvError> {
        if self.peers.is_cut_off(peer) {
            return Err(peer_error(peer, "cut off by fault injection"));
        }
        Ok(())
    }

    fn client(&self, peer: &Member) -> Result<Client, KvError> {
        let channel = self.peers.shaped(peer).map_err(|e| peer_error(peer, e))?;
        Ok(Client::new(channel)
            .max_decoding_message_size(nimbus_cluster::peers::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(nimbus_cluster::peers::MAX_MESSAGE_BYTES))
    }

    async fn push(&self, peer: &Member, entries: Vec<KvEntry>) -> Result<u64, KvError> {
        let bytes: usize = entries.iter().map(prost::Message::encoded_len).sum();
        let this = self.clone();
        let to = peer.clone();
        // A partition that starts mid-stream ends the stream there.
        let entries =
            tokio_stream::StreamExt::take_while(tokio_stream::iter(entries), move |_| this.reachable(&to).is_ok());
        let request = self.request(peer, entries)?;
        let reply = self.client(peer)?.push_kv(request).await.map_err(|e| peer_error(peer, e.message()))?;
        self.metrics.kv_pushed_bytes.inc_by(bytes as u64);
        Ok(reply.into_inner().applied)
    }

    /// Until shutdown: anti-entropy with a random peer every cycle, purges, WAL syncs.
    pub async fn maintain(self, shutdown: CancellationToken) {
        let mut anti_entropy = tokio::time::interval(self.settings.anti_entropy_every);
        let mut purge = tokio::time::interval(self.settings.purge_every);
        let mut wal_sync = tokio::time::interval(self.settings.wal_sync_every);
        for timer in [&mut anti_entropy, &mut purge, &mut wal_sync] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        // A member that comes up (new, restarted, or back from a partition) is the one most
        // likely to differ: exchange with it at once rather than when chance picks it.
        let mut membership = self.membership.subscribe();
        let mut membership_open = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = membership.recv(), if membership_open => match event {
                    Ok(MembershipEvent::Up(peer)) => self.exchange(&peer).await,
                    Ok(MembershipEvent::Down(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => membership_open = false,
                },
                _ = anti_entropy.tick() => self.anti_entropy_round().await,
                _ = purge.tick() => self.purge().await,
                _ = wal_sync.tick() => {
                    if let Err(e) = self.kv.sync() {
                        tracing::warn!("kv WAL sync: {e}");
                    }
                }
            }
        }
        if let Err(e) = self.kv.sync() {
            tracing::warn!("kv WAL sync at shutdown: {e}");
        }
    }

    async fn purge(&self) {
        let kv = self.kv.clone();
        let grace = self.settings.tombstone_grace.as_millis() as u64;
        match tokio::task::spawn_blocking(move || kv.purge(grace)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(purged)) => tracing::debug!(purged, "kv: purged expired entries and old tombstones"),
            Ok(Err(e)) => tracing::warn!("kv purge: {e}"),
            Err(e) => tracing::warn!("kv purge task: {e}"),
        }
    }

    async fn anti_entropy_round(&self) {
        let peers = match self.membership.alive_peers().await {
            Ok(peers) => peers,
            Err(e) => return tracing::warn!("kv anti-entropy: {e}"),
        };
        let Some(peer) = peers.choose(&mut rand::rngs::StdRng::from_os_rng()).cloned() else { return };
        self.exchange(&peer).await;
    }

    async fn exchange(&self, peer: &Member) {
        match self.sync_with(peer).await {
            Ok(synced) => {
                self.metrics.kv_sync_rounds.inc();
                if let Err(e) = self.kv.record_sync() {
                    tracing::warn!("kv: recording the exchange: {e}");
                }
                if synced.buckets > 0 {
                    tracing::debug!(peer = %peer.node_id, buckets = synced.buckets, pulled = synced.pulled, pushed = synced.pushed, dropped = synced.dropped, "kv anti-entropy repaired differences");
                }
            }
            Err(e) => tracing::debug!("kv anti-entropy: {e}"),
        }
    }

    /// One anti-entropy exchange with `peer`, in both directions.
    pub async fn sync_with(&self, peer: &Member) -> Result<Synced, KvError> {
        let mut client = self.client(peer)?;
        let mut remote = client
            .kv_digests(self.request(peer, KvDigestsRequest {})?)
            .await
            .map_err(|e| peer_error(peer, e.message()))?
            .into_inner();
        let mut diff = differing(&self.kv.digests().snapshot(), &decode_digests(&remote.digests));
        let mut synced = Synced { buckets: diff.len(), ..Synced::default() };
        let fresh = self.started_empty.swap(false, std::sync::atomic::Ordering::Relaxed);
        if diff.is_empty() {
            return Ok(synced);
        }
        let local_entries = self.kv.digests().entries();
        // Far behind: less than half the peer's entries, and either a store of only a few
        // (empty, or a few gossip rumors in after a wipe) or most buckets differing.
        let far_behind = |ours: u64, theirs: u64| theirs > 2 * ours && (ours < FEW_ENTRIES || diff.len() > BUCKETS / 2);
        if far_behind(remote.entries, local_entries) {
            // The peer streams a bulk copy from us (or another node) when it runs its own
            // round; repairing it bucket by bucket from here would be the slow way.
            return Ok(synced);
        }
        if (fresh && remote.entries > local_entries) || far_behind(local_entries, remote.entries) {
            let copied = self.bulk_copy(peer, &mut client, remote.entries).await;
            if copied.is_err() && fresh {
                // Try the bulk copy again with the next peer.
                self.started_empty.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            synced.pulled += copied?;
            remote = client
                .kv_digests(self.request(peer, KvDigestsRequest {})?)
                .await
                .map_err(|e| peer_error(peer, e.message()))?
                .into_inner();
            diff = differing(&self.kv.digests().snapshot(), &decode_digests(&remote.digests));
        }
        for buckets in diff.chunks(BUCKETS_PER_REQUEST) {
            let repaired = self.repair(peer, &mut client, buckets).await?;
            synced.pulled += repaired.pulled;
            synced.pushed += repaired.pushed;
            synced.dropped += repaired.dropped;
        }
        Ok(synced)
    }

    /// Compares the versions in `buckets` and moves each side's newer entries to the other.
    async fn repair(&self, peer: &Member, client: &mut Client, buckets: &[u32]) -> Result<Synced, KvError> {
        let request = self.request(peer, KvBucketVersionsRequest { buckets: buckets.to_vec() })?;
        let remote = client.kv_bucket_versions(request).await.map_err(|e| peer_error(peer, e.message()))?;
        let kv = self.kv.clone();
        let owned = buckets.to_vec();
        let local = tokio::task::spawn_blocking(move || kv.versions_in(&owned))
            .await
            .map_err(|e| KvError::Corrupt(e.to_string()))??;
        let mut local: HashMap<Vec<u8>, super::Version> = local.into_iter().collect();
        let mut pull = Vec::new();
        let mut push = Vec::new();
        for theirs in remote.into_inner().versions {
            let (raw, version) = from_key_version(&theirs);
            match local.remove(&raw) {
                Some(ours) if ours > version => push.push(raw),
                Some(ours) if ours == version => {}
                _ => pull.push(theirs),
            }
        }
        // What only we hold goes to the peer, unless we are back from a long absence and it
        // predates our last exchange: then the peer forgot it because it was deleted.
        let stale_before = self.kv.stale_before();
        let mut dropped = 0;
        for (raw, ours) in local {
            if ours.hlc <= stale_before {
                if self.kv.forget(&raw, &ours)? {
                    dropped += 1;
                }
            } else {
                push.push(raw);
            }
        }

        let mut pulled = 0;
        for keys in pull.chunks(KEYS_PER_FETCH) {
            let request = self.request(peer, FetchKvRequest { keys: keys.to_vec() })?;
            let mut stream = client.fetch_kv(request).await.map_err(|e| peer_error(peer, e.message()))?.into_inner();
            while let Some(wire) = stream.message().await.map_err(|e| peer_error(peer, e.message()))? {
                self.reachable(peer)?;
                if apply_remote(&self.kv, &self.metrics, wire, "anti_entropy")? {
                    pulled += 1;
                }
            }
        }
        let pushed = push.len() as u64;
        if !push.is_empty() {
            let kv = self.kv.clone();
            let entries = tokio::task::spawn_blocking(move || kv.fetch_raw(&push))
                .await
                .map_err(|e| KvError::Corrupt(e.to_string()))??;
            let entries = entries.iter().map(|(namespace, key, entry)| to_wire(namespace, key, entry)).collect();
            self.push(peer, entries).await?;
        }
        Ok(Synced { buckets: buckets.len(), pulled, pushed, dropped })
    }

    /// Streams the peer's whole replica in and merges it; returns how many entries won.
    async fn bulk_copy(&self, peer: &Member, client: &mut Client, expected: u64) -> Result<u64, KvError> {
        tracing::info!(peer = %peer.node_id, entries = expected, "kv: replica is empty or far behind; bulk copy");
        let request = self.request(peer, KvSnapshotRequest::default())?;
        let mut stream = client.kv_snapshot(request).await.map_err(|e| peer_error(peer, e.message()))?.into_inner();
        let (mut seen, mut applied) = (0u64, 0u64);
        while let Some(wire) = stream.message().await.map_err(|e| peer_error(peer, e.message()))? {
            self.reachable(peer)?;
            seen += 1;
            if apply_remote(&self.kv, &self.metrics, wire, "bulk")? {
                applied += 1;
            }
            if seen % 10_000 == 0 {
                tracing::info!(peer = %peer.node_id, copied = seen, of = expected, "kv bulk copy progress");
            }
        }
        tracing::info!(peer = %peer.node_id, copied = seen, applied, "kv bulk copy done");
        Ok(applied)
    }
}

/// What an anti-entropy exchange found and moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub buckets: usize,
    pub pulled: u64,
    pub pushed: u64,
    /// Entries forgotten because the peer had purged their deletes (see `stale_before`).
    pub dropped: u64,
}

/// Bucket digests as sent: u64 little endian, bucket 0 first.
pub fn encode_digests(digests: &[u64]) -> Vec<u8> {
    digests.iter().flat_map(|d| d.to_le_bytes()).collect()
}

fn decode_digests(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
}

/// The (key, version) list a peer asked for, as sent.
pub fn bucket_versions(kv: &KvStore, buckets: &[u32]) -> Result<Vec<nimbus_proto::peer::KeyVersion>, KvError> {
    let buckets = distinct(buckets.to_vec(), BUCKETS_PER_REQUEST, "buckets")?;
    Ok(kv.versions_in(&buckets)?.iter().filter_map(|(raw, version)| key_version(raw, version)).collect())
}

/// The storage keys a fetch asks for, each once, or why the request is refused.
pub fn fetch_keys(keys: &[nimbus_proto::peer::KeyVersion]) -> Result<Vec<Vec<u8>>, KvError> {
    distinct(keys.iter().map(|k| from_key_version(k).0).collect(), KEYS_PER_FETCH, "keys")
}

/// What a peer asked for, each once, or refused when that is more than `limit`.
fn distinct<T: Ord>(mut items: Vec<T>, limit: usize, what: &str) -> Result<Vec<T>, KvError> {
    items.sort_unstable();
    items.dedup();
    if items.len() > limit {
        return Err(KvError::AntiEntropy(format!(
            "{} {what} asked for at once, over the limit of {limit}",
            items.len()
        )));
    }
    Ok(items)
}

/// Entries a peer asked for by key, as sent.
pub fn fetch(kv: &KvStore, raw_keys: &[Vec<u8>]) -> Result<Vec<KvEntry>, KvError> {
    Ok(kv.fetch_raw(raw_keys)?.iter().map(|(namespace, key, entry)| to_wire(namespace, key, entry)).collect())
}
