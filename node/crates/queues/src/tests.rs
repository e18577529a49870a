//! The state machine's rules, applied as the log would apply them.

use super::state::*;
use super::*;

struct Log {
    state: State,
    index: u64,
    _dir: tempfile::TempDir,
}

impl Log {
    fn new() -> Log {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = State::open(&dir.path().join("q.sqlite")).expect("opens");
        Log { state, index: 0, _dir: dir }
    }

    fn apply(&mut self, command: Command) -> Reply {
        self.index += 1;
        let bytes = postcard::to_allocvec(&command).expect("encodes");
        let replies = self.state.apply(self.index, &[bytes]).expect("applies");
        postcard::from_bytes(&replies[0]).expect("decodes")
    }

    fn queue(&mut self, name: &str, settings: ConsumerSettings) {
        assert_eq!(self.apply(Command::CreateQueue { name: name.into(), time_ms: 0 }), Reply::Created(true));
        let consumer = Consumer { kind: ConsumerKind::Worker("w".into()), settings };
        assert_eq!(self.apply(Command::PutConsumer { queue: name.into(), consumer, time_ms: 0 }), Reply::Done);
    }

    fn send(&mut self, queue: &str, ids: &[&str], delay_secs: u32, time_ms: u64) -> Reply {
        let messages = ids
            .iter()
            .map(|id| NewMessage {
                id: (*id).into(),
                body: id.as_bytes().to_vec(),
                content_type: ContentType::Text,
                delay_secs,
            })
            .collect();
        self.apply(Command::Send { queue: queue.into(), messages, time_ms })
    }

    fn lease(&mut self, queue: &str, lease: &str, max: u32, time_ms: u64) -> Vec<Message> {
        let command = Command::Lease {
            queue: queue.into(),
            lease: lease.into(),
            holder: "node-1".into(),
            max,
            time_ms,
            until_ms: time_ms + 10_000,
        };
        match self.apply(command) {
            Reply::Leased(messages) => messages,
            other => panic!("lease answered {other:?}"),
        }
    }

    fn settle(&mut self, lease: &str, decisions: &[(&str, Decision)], time_ms: u64) -> Reply {
        let decisions = decisions.iter().map(|(id, d)| ((*id).to_owned(), *d)).collect();
        self.apply(Command::Settle { lease: lease.into(), decisions, time_ms })
    }

    fn info(&self, queue: &str) -> QueueInfo {
        self.state.queue(queue).expect("reads").expect("exists")
    }
}

fn ids(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

#[test]
fn a_send_to_a_missing_queue_is_refused_and_a_retried_send_stores_once() {
    let mut log = Log::new();
    assert_eq!(log.send("nope", &["a"], 0, 1), Reply::Refused(Refusal::NoSuchQueue("nope".into())));
    log.queue("q", ConsumerSettings::default());
    assert_eq!(log.send("q", &["a", "b"], 0, 1), Reply::Done);
    // The same proposal applied again (a retry after a leader change) changes nothing.
    assert_eq!(log.send("q", &["a", "b"], 0, 1), Reply::Done);
    let info = log.info("q");
    assert_eq!((info.backlog, info.sent), (2, 2));
}

#[test]
fn leases_take_due_messages_in_order_and_never_twice() {
    let mut log = Log::new();
    log.queue("q", ConsumerSettings::default());
    log.send("q", &["a", "b", "c"], 0, 1_000);
    log.send("q", &["later"], 60, 1_000);
    let first = log.lease("q", "l1", 2, 2_000);
    assert_eq!(ids(&first), ["a", "b"]);
    assert!(first.iter().all(|m| m.attempts == 1));
    let second = log.lease("q", "l2", 10, 2_000);
    assert_eq!(ids(&second), ["c"], "leased messages and delayed ones are not leased again");
    assert!(log.lease("q", "l3", 10, 2_000).is_empty());
    assert_eq!(ids(&log.lease("q", "l4", 10, 61_000)), ["later"], "due after its delay");
    assert_eq!(log.info("q").in_flight, 4);
}

#[test]
fn max_concurrency_bounds_leases_of_a_worker_consumer() {
    let mut log = Log::new();
    log.queue("q", ConsumerSettings { max_concurrency: 1, ..Default::default() });
    log.send("q", &["a", "b"], 0, 0);
    log.lease("q", "l1", 1, 0);
    let refused = log.apply(Command::Lease {
        queue: "q".into(),
        lease: "l2".into(),
        holder: "n".into(),
        max: 1,
        time_ms: 0,
        until_ms: 10,
    });
    assert_eq!(refused, Reply::Refused(Refusal::Busy));
}

#[test]
fn settling_acks_retries_with_backoff_and_dead_letters_after_max_retries() {
    let mut log = Log::new();
    let settings = ConsumerSettings {
        max_retries: 1,
        retry_delay_secs: 10,
        dead_letter_queue: Some("dlq".into()),
        ..Default::default()
    };
    log.queue("q", settings);
    log.send("q", &["a", "b"], 0, 0);
    log.lease("q", "l1", 10, 0);
    let settled = log.settle("l1", &[("a", Decision::Ack), ("b", Decision::Retry(None))], 1_000);
    assert_eq!(settled, Reply::Settled(Settled { acked: 1, retried: 1, ..Default::default() }));
    // Backoff: retry_delay × 2^(attempts-1) = 10 s after the first delivery.
    assert!(log.lease("q", "l2", 10, 10_999).is_empty());
    let again = log.lease("q", "l2", 10, 11_000);
    assert_eq!(ids(&again), ["b"]);
    assert_eq!(again[0].attempts, 2);
    // Past max_retries (1): to the dead-letter queue, fresh.
    let settled = log.settle("l2", &[("b", Decision::Retry(None))], 12_000);
    assert_eq!(settled, Reply::Settled(Settled { dead_lettered: 1, ..Default::default() }));
    assert_eq!(log.info("q").backlog, 0);
    let dlq = log.state.peek("dlq", 10).expect("peeks");
    assert_eq!(ids(&dlq), ["b"]);
    assert_eq!(dlq[0].attempts, 0);
    let info = log.info("q");
    assert_eq!((info.acked, info.retried, info.dead_lettered), (1, 1, 1));
}

#[test]
fn without_a_dead_letter_queue_exhausted_messages_are_dropped_and_counted() {
    let mut log = Log::new();
    log.queue("q", ConsumerSettings { max_retries: 0, ..Default::default() });
    log.send("q", &["a"], 0, 0);
    log.lease("q", "l1", 10, 0);
    assert_eq!(
        log.settle("l1", &[("a", Decision::Retry(Some(5)))], 1),
        Reply::Settled(Settled { dropped: 1, ..Default::default() })
    );
    let info = log.info("q");
    assert_eq!((info.backlog, info.dropped), (0, 1));
}

#[test]
fn an_expired_lease_gives_its_messages_back_and_a_late_settle_is_refused() {
    let mut log = Log::new();
    log.queue("q", ConsumerSettings::default());
    log.send("q", &["a", "b"], 0, 0);
    log.lease("q", "l1", 10, 0); // until 10_000
    match log.apply(Command::Expire { time_ms: 9_999, retention_ms: u64::MAX }) {
        Reply::Expired { leases: 0, .. } => {}
        other => panic!("nothing is due to expire yet: {other:?}"),
    }
    match log.apply(Command::Expire { time_ms: 10_000, retention_ms: u64::MAX }) {
        Reply::Expired { leases: 1, returned: 2, .. } => {}
        other => panic!("{other:?}"),
    }
    let again = log.lease("q", "l2", 10, 10_000);
    assert_eq!(ids(&again), ["a", "b"]);
    assert!(again.iter().all(|m| m.attempts == 2));
    // The first holder comes back late: its acks must not remove the re-leased messages.
    assert_eq!(log.settle("l1", &[("a", Decision::Ack)], 10_001), Reply::Refused(Refusal::NoSuchLease("l1".into())));
    assert_eq!(log.info("q").backlog, 2);
    log.settle("l2", &[("a", Decision::Ack), ("b", Decision::Ack)], 10_002);
    assert_eq!(log.info("q").backlog, 0);
    assert!(log.state.lease("l2").expect("reads").is_none(), "a settled lease is gone");
}

#[test]
fn retention_drops_old_messages() {
    let mut log = Log::new();
    log.queue("q", ConsumerSettings::default());
    log.send("q", &["old"], 0, 0);
    log.send("q", &["new"], 0, 5_000);
    log.apply(Command::Expire { time_ms: 6_000, retention_ms: 3_000 });
    assert_eq!(ids(&log.state.peek("q", 10).expect("peeks")), ["new"]);
    assert_eq!(log.info("q").dropped, 1);
}

#[test]
fn a_cron_tick_is_claimed_once() {
    let mut log = Log::new();
    let claim = |holder: &str| Command::Claim {
        worker: "w".into(),
        cron: "* * * * *".into(),
        scheduled_ms: 60_000,
        holder: holder.into(),
        time_ms: 60_001,
        status: None,
    };
    assert_eq!(log.apply(claim("node-1")), Reply::Done);
    assert_eq!(log.apply(claim("node-2")), Reply::Refused(Refusal::Claimed));
    assert_eq!(log.state.runs_of("node-1").expect("reads").len(), 1);
    assert!(log.state.runs_of("node-2").expect("reads").is_empty());
    log.apply(Command::Outcome {
        worker: "w".into(),
        cron: "* * * * *".into(),
        scheduled_ms: 60_000,
        status: RunStatus::Ok,
        duration_ms: 3,
    });
    assert!(log.state.runs_of("node-1").expect("reads").is_empty());
    let runs = log.state.runs("w", 10).expect("reads");
    assert_eq!(runs[0].status, Some(RunStatus::Ok));
    assert_eq!(log.state.last_run("w", "* * * * *").expect("reads"), Some(60_000));
}

/// The CI failure of 2026-12-05 ("a tick ran twice"): a follower's runner finished a cron
/// run, its `Outcome` was committed through the leader, and the runner looked at its own
/// replica before that replica had applied the outcome. The run was still listed as held
/// there and no longer marked started, so it ran again. A started run now stays marked until
/// this replica stops listing it.
#[test]
fn a_finished_run_is_not_started_again_while_this_replica_still_lists_it() {
    let mut log = Log::new();
    let claim = Command::Claim {
        worker: "w".into(),
        cron: "* * * * *".into(),
        scheduled_ms: 60_000,
        holder: "node-2".into(),
        time_ms: 60_001,
        status: None,
    };
    assert_eq!(log.apply(claim), Reply::Done);
    let started = crate::dispatch::Started::default();
    let listed = |log: &Log| {
        log.state
            .runs_of("node-2")
            .expect("reads")
            .iter()
            .map(|r| format!("{} {}", r.worker, r.scheduled_ms))
            .collect::<Vec<_>>()
    };

    // The runner's first look: the run is listed and started.
    started.forget_all_but(listed(&log).into_iter());
    assert!(started.start("w 60000"));
    // Its handler returned and its outcome is committed on the leader, not yet applied
    // here: the next look still lists it, and it is not started again.
    started.forget_all_but(listed(&log).into_iter());
    assert_eq!(listed(&log), ["w 60000"]);
    assert!(!started.start("w 60000"), "a finished run started again");
    // Applied here: it leaves the list, and the mark goes with it.
    log.apply(Command::Outcome {
        worker: "w".into(),
        cron: "* * * * *".into(),
        scheduled_ms: 60_000,
        status: RunStatus::Ok,
        duration_ms: 3,
    });
    started.forget_all_but(listed(&log).into_iter());
    assert!(listed(&log).is_empty());
    assert!(started.start("w 60000"), "a key no longer listed is forgotten");
}

#[test]
fn a_snapshot_restores_the_whole_state_and_a_replay_changes_nothing() {
    let mut log = Log::new();
    log.queue("q", ConsumerSettings::default());
    log.send("q", &["a"], 0, 0);
    let image = log.state.snapshot().expect("snapshots");
    let other = Log::new();
    other.state.restore(Some(&image)).expect("restores");
    assert_eq!(ids(&other.state.peek("q", 10).expect("peeks")), ["a"]);
    // An index already applied (a replay after a crash) is skipped.
    let bytes = postcard::to_allocvec(&Command::DeleteQueue { name: "q".into() }).expect("encodes");
    other.state.apply(1, &[bytes]).expect("applies");
    assert!(other.state.queue("q").expect("reads").is_some());
    other.state.restore(None).expect("empties");
    assert!(other.state.queues().expect("reads").is_empty());
}

#[test]
fn a_malformed_command_is_refused_and_changes_nothing() {
    let log = Log::new();
    let replies = log.state.apply(1, &[vec![0xff, 0xff, 0xff]]).expect("applies");
    let reply: Reply = postcard::from_bytes(&replies[0]).expect("decodes");
    assert!(matches!(reply, Reply::Refused(Refusal::Malformed(_))));
}

#[test]
fn limits_are_checked_before_anything_is_proposed() {
    let message = |len: usize| Outgoing { body: vec![b'x'; len], content_type: ContentType::Bytes, delay_secs: None };
    assert!(check_batch(&[message(MAX_MESSAGE_BYTES)]).is_ok());
    assert!(matches!(check_batch(&[message(MAX_MESSAGE_BYTES + 1)]), Err(QueueError::TooLarge(_))));
    assert!(matches!(check_batch(&vec![message(1); 101]), Err(QueueError::TooLarge(_))));
    assert!(matches!(
        check_batch(&[message(100_000), message(100_000), message(100_000)]),
        Err(QueueError::TooLarge(_))
    ));
    assert!(check_batch(&[]).is_err());
    let late = Outgoing { delay_secs: Some(MAX_DELAY_SECS + 1), ..message(1) };
    assert!(matches!(check_batch(&[late]), Err(QueueError::InvalidInput(_))));
    assert!(check_queue_name("emails-dlq").is_ok());
    for bad in ["", "Emails", "-x", "a b", &"x".repeat(64)] {
        assert!(check_queue_name(bad).is_err(), "{bad:?}");
    }
    let consumer = |settings| Consumer { kind: ConsumerKind::Worker("w".into()), settings };
    assert!(check_consumer(&consumer(ConsumerSettings::default())).is_ok());
    assert!(check_consumer(&consumer(ConsumerSettings { max_batch_size: 101, ..Default::default() })).is_err());
    assert!(check_consumer(&consumer(ConsumerSettings { max_batch_timeout_secs: 61, ..Default::default() })).is_err());
}

#[test]
fn backoff_doubles_from_retry_delay_and_is_capped() {
    let settings = ConsumerSettings { retry_delay_secs: 5, ..Default::default() };
    assert_eq!(backoff_secs(&settings, 1, None), 5);
    assert_eq!(backoff_secs(&settings, 2, None), 10);
    assert_eq!(backoff_secs(&settings, 3, None), 20);
    assert_eq!(backoff_secs(&settings, 40, None), MAX_DELAY_SECS);
    assert_eq!(backoff_secs(&settings, 3, Some(7)), 7, "an explicit delay wins");
}
