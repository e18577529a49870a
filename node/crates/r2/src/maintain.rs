//! Background work on chunks and uploads, one round every `r2.maintain_secs` on every node:
//!
//! - **repair**: every chunk the metadata references and this node should hold (it is among
//!   the chunk's holders by the current live membership) but does not, is fetched from a
//!   member that has it (hash-checked). Each node restores its own copies, so after a node or
//!   disk loss the chunks find their three holders again without any coordination;
//! - **garbage**: a chunk file no object or part references, older than
//!   `r2.chunk_grace_secs`, is deleted (checked against the metadata after a linearizable
//!   read, so a reference committed anywhere before the round is seen). The grace period
//!   covers a PUT whose chunks are written and whose metadata is not committed yet; a PUT
//!   that finds its chunk already here renews the file's time;
//! - **expiry** (the leader only): uploads older than `r2.upload_expiry_secs` are aborted.

use super::{R2Error, R2};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Round {
    /// Chunks this node should hold and fetched.
    pub repaired: u64,
    /// Chunks this node should hold and could not fetch from anyone (yet).
    pub missing: u64,
    pub collected: u64,
    pub expired_uploads: u64,
}

/// Referenced chunk ids read per metadata query.
const PAGE: usize = 1024;

/// Runs a round every `r2.maintain_secs` until shutdown.
pub async fn run(r2: R2, shutdown: CancellationToken) {
    let every = Duration::from_secs(r2.config().maintain_secs.max(1));
    while R2::pause(every, &shutdown).await {
        match r2.maintain().await {
            Ok(round) if round != Round::default() => tracing::info!(?round, "r2 maintenance"),
            Ok(_) => {}
            Err(e) => tracing::warn!("r2 maintenance: {e}"),
        }
    }
}

impl R2 {
    /// One round of repair, garbage collection and (on the leader) upload expiry.
    pub async fn maintain(&self) -> Result<Round, R2Error> {
        let mut round = Round::default();
        self.log().linearize().await?;
        let expiry = self.config().upload_expiry_secs.saturating_mul(1000);
        let before_ms = super::now_ms().saturating_sub(expiry);
        if self.log().leads() && self.meta().has_uploads_before(before_ms)? {
            if let super::meta::Reply::Expired(count) =
                self.propose(super::meta::Command::ExpireUploads { before_ms }).await?
            {
                round.expired_uploads = count;
            }
        }
        self.repair(&mut round).await?;
        self.collect(&mut round).await?;
        Ok(round)
    }

    async fn repair(&self, round: &mut Round) -> Result<(), R2Error> {
        let members = self.live_members().await;
        let me = self.inner.membership.me().node_id.clone();
        let mut after = None;
        loop {
            let page = {
                let (meta, after) = (self.meta().clone(), after);
                tokio::task::spawn_blocking(move || meta.referenced_chunks(after.as_ref(), PAGE))
                    .await
                    .map_err(|e| R2Error::Internal(e.to_string()))??
            };
            let Some(last) = page.last().copied() else { break };
            for id in page {
                let holders = super::peer::ranked(&id, &members);
                let mine = holders.iter().take(super::chunks::COPIES).any(|m| m.node_id == me);
                if !mine || self.chunks().contains(&id) {
                    continue;
                }
                match self.read_chunk(id).await {
                    Ok(data) => {
                        let chunks = self.chunks().clone();
                        tokio::task::spawn_blocking(move || chunks.put_as(&id, &data))
                            .await
                            .map_err(|e| R2Error::Internal(e.to_string()))??;
                        round.repaired += 1;
                    }
                    Err(e) => {
                        tracing::warn!(%id, "r2 repair: {e}");
                        round.missing += 1;
                    }
                }
            }
            after = Some(last);
        }
        Ok(())
    }

    async fn collect(&self, round: &mut Round) -> Result<(), R2Error> {
        let grace = Duration::from_secs(self.config().chunk_grace_secs);
        let (chunks, meta) = (self.chunks().clone(), self.meta().clone());
        round.collected = tokio::task::spawn_blocking(move || -> Result<u64, R2Error> {
            let mut collected = 0;
            let old = |written: SystemTime| written.elapsed().is_ok_and(|age| age >= grace);
            for (id, written) in chunks.list()? {
                if !old(written) || meta.is_referenced(&id)? {
                    continue;
                }
                // A PUT may have renewed it since the listing.
                if !chunks.written_at(&id).is_some_and(old) {
                    continue;
                }
                if chunks.remove(&id)? {
                    collected += 1;
                }
            }
            Ok(collected)
        })
        .await
        .map_err(|e| R2Error::Internal(e.to_string()))??;
        Ok(())
    }
}
