//! Unit tests of Durable Objects: ids, and the ownership protocol on one real node (RocksDB in a
//! temp dir, a view the test publishes, a counting class).

use super::*;
use nimbus_util::tasks::Tasks;
use std::sync::OnceLock;

#[test]
fn names_map_to_stable_ids_scoped_to_their_namespace() {
    let counters = Namespace::new("app", "Counter");
    let a = counters.id_from_name("room-1");
    assert_eq!(a, counters.id_from_name("room-1"), "the same name, the same id");
    assert_ne!(a, counters.id_from_name("room-2"));
    assert_ne!(a, Namespace::new("app", "Chat").id_from_name("room-1"), "namespaces do not share ids");
    assert_eq!(a.to_string().len(), 64);
    assert_eq!(counters.id_from_string(&a.to_string()).expect("round trip"), a);
}

#[test]
fn unique_ids_differ_and_round_trip() {
    let ns = Namespace::new("app", "Counter");
    let (a, b) = (ns.new_unique_id(), ns.new_unique_id());
    assert_ne!(a, b);
    assert_eq!(ns.id_from_string(&b.to_string()).expect("round trip"), b);
}

#[test]
fn malformed_and_foreign_ids_are_refused() {
    let ns = Namespace::new("app", "Counter");
    for bad in ["", "xyz", &"0".repeat(63), &"g".repeat(64), &"0".repeat(66)] {
        assert!(matches!(ns.id_from_string(bad), Err(DurableError::MalformedId(_))), "{bad:?}");
    }
    let other = Namespace::new("app", "Chat").id_from_name("x").to_string();
    assert!(matches!(ns.id_from_string(&other), Err(DurableError::ForeignId { .. })));
    let mut tampered = ns.id_from_name("x").to_string();
    tampered.replace_range(0..1, if tampered.starts_with('0') { "1" } else { "0" });
    assert!(ns.id_from_string(&tampered).is_err(), "a changed digit fails the namespace tag");
}

// ---------------------------------------------------------------------------------------
// The ownership protocol on one node: a real `Durable` on RocksDB in a temp dir, a view
// channel the test publishes (or never publishes), and a class that counts.
// ---------------------------------------------------------------------------------------

use nimbus_cluster::faults::Faults;
use nimbus_cluster::peers::PeerChannels;
use nimbus_storage::{Batch, Storage, CF_META};
use std::sync::atomic::AtomicUsize;
use storage::{HolderState, Snapshot, Write};
use wire::{HttpMessage, Step, Version};

fn member(node_id: &str, port: u16) -> Member {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    Member {
        node_id: node_id.into(),
        region: "local".into(),
        http_addr: addr,
        rpc_addr: addr,
        gossip_addr: addr,
        d1_voter: false,
        bump: 0,
    }
}

/// A version of `node`'s epoch `term`.
fn v(term: u64, node: &str, seq: u64) -> Version {
    Version { epoch: epoch(term, node), seq }
}

fn epoch(term: u64, node: &str) -> Epoch {
    Epoch { term, node: node.into() }
}

/// A counter: each `fetch` reads `count`, writes it plus one and answers the new value.
#[derive(Default)]
struct Counters {
    runs: Arc<AtomicUsize>,
    /// Run by an alarm handler before it answers (to move ownership under it).
    during_alarm: Option<Arc<dyn Fn() + Send + Sync>>,
}

struct Counter {
    context: ObjectContext,
    runs: Arc<AtomicUsize>,
    during_alarm: Option<Arc<dyn Fn() + Send + Sync>>,
}

#[async_trait::async_trait]
impl ClassHost for Counters {
    fn has_class(&self, _: &Namespace) -> bool {
        true
    }
    async fn instantiate(&self, context: ObjectContext) -> Result<Box<dyn ObjectInstance>, DurableError> {
        Ok(Box::new(Counter { context, runs: self.runs.clone(), during_alarm: self.during_alarm.clone() }))
    }
}

#[async_trait::async_trait]
impl ObjectInstance for Counter {
    async fn run(&mut self, event: &Event) -> Result<EventOutcome, DurableError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match event {
            Event::Alarm { .. } => {
                if let Some(during) = &self.during_alarm {
                    during();
                }
                Ok(EventOutcome::AlarmDone)
            }
            _ => {
                let count = count_of(&self.context.get(&["count".into()])?[0]);
                self.context.write(vec![put_count(count + 1)])?;
                Ok(EventOutcome::Response(HttpMessage {
                    status: 200,
                    body: (count + 1).to_string().into_bytes(),
                    ..Default::default()
                }))
            }
        }
    }
}

fn count_of(value: &Option<Vec<u8>>) -> u64 {
    value.as_deref().and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn put_count(count: u64) -> Write {
    Write::Put { key: "count".into(), value: count.to_string().into_bytes() }
}

fn increment() -> Event {
    Event::Fetch(HttpMessage { method: "POST".into(), url: "http://do/c".into(), ..Default::default() })
}

struct Node {
    _dir: tempfile::TempDir,
    me: Member,
    durable: Durable,
    publish: watch::Sender<View>,
}

/// A node whose view channel starts as the node's startup does.
fn node(node_id: &str, classes: Counters, prepare: impl FnOnce(&Storage)) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(&dir.path().join("db")).expect("rocksdb");
    prepare(&storage);
    let me = member(node_id, 1);
    let (publish, view) = view::channel(me.clone());
    let peers = PeerChannels::new(me.gossip_addr, &me.node_id, Arc::new(Faults::default()), None);
    let config = DurableConfig { request_timeout_ms: 300, ..DurableConfig::default() };
    let durable = Durable::new(&me, storage.clone(), view, peers, &config, Arc::new(classes), Tasks::new());
    Node { _dir: dir, me, durable, publish }
}

/// The view of a node that has heard from the live members `live` of `known`.
fn published(me: &Member, live: Vec<Member>, known: usize) -> View {
    View { me: me.node_id.clone(), live, known, ready: true }
}

fn remember_members(storage: &Storage, ids: &[&str]) {
    let now = object::now_ms() as u64;
    let seen: std::collections::BTreeMap<&str, u64> = ids.iter().map(|id| (*id, now)).collect();
    let mut batch = Batch::default();
    batch.put(CF_META, b"durable/members".to_vec(), serde_json::to_vec(&seen).expect("json"));
    storage.write_unsynced(batch).expect("write");
}

fn counter_ns() -> (Namespace, ObjectId) {
    let ns = Namespace::new("app", "Counter");
    let id = ns.id_from_name("c");
    (ns, id)
}

fn holder_state(promised: Epoch, version: Version) -> HolderState {
    HolderState { namespace: "app:Counter".into(), promised, version }
}

fn stored_count(node: &Node, id: &ObjectId) -> u64 {
    count_of(&node.durable.inner.storage.get(id, &["count".into()]).expect("get")[0])
}

fn stored_version(node: &Node, id: &ObjectId) -> Version {
    node.durable.inner.storage.state(id).expect("state").expect("a holder state").version
}

/// The holder every request of these tests is for.
const HOLDER: &str = "node-3";

fn promise(id: &ObjectId, epoch: Epoch) -> Request {
    promise_to(HOLDER, id, epoch)
}

fn promise_to(to: &str, id: &ObjectId, epoch: Epoch) -> Request {
    Request::Promise { to: to.into(), namespace: "app:Counter".into(), id: id.0, epoch }
}

fn replicate(id: &ObjectId, epoch: Epoch, steps: Vec<Step>) -> Request {
    let head = steps.last().map(|s| s.version.clone()).unwrap_or_default();
    Request::Replicate { to: HOLDER.into(), namespace: "app:Counter".into(), id: id.0, epoch, steps, head }
}

fn install(id: &ObjectId, epoch: Epoch, snapshot: Snapshot) -> Request {
    Request::Install { to: HOLDER.into(), namespace: "app:Counter".into(), id: id.0, epoch, snapshot }
}

fn step(base: Version, version: Version, count: Option<u64>) -> Step {
    Step { base, version, writes: count.map(put_count).into_iter().collect() }
}

#[tokio::test]
async fn a_restarted_node_owns_nothing_before_its_first_view() {
    let (ns, id) = counter_ns();
    // This node held a copy of the counter at 5 under node-2's epoch 3, and remembers a
    // cluster of five; the cluster has gone on without it since.
    let node = node("node-1", Counters::default(), |storage| {
        let copy = storage::ObjectStorage::new(storage.clone());
        copy.apply(&id, &[put_count(5)], &holder_state(epoch(3, "node-2"), v(3, "node-2", 5))).expect("copy");
        remember_members(storage, &["node-1", "node-2", "node-3", "node-4", "node-5"]);
    });
    // Membership has not published a view yet (gossip has not answered, or the member
    // memory is still loading): the node must not answer from its stale copy on its own.
    let outcome = node.durable.call(&ns, id, increment()).await;
    assert!(
        outcome.is_err(),
        "a node that has not published its first view answered from its stale copy alone: {outcome:?}"
    );
    assert_eq!(stored_count(&node, &id), 5, "nothing ran");
}

#[test]
fn a_step_from_another_lineage_is_not_skipped_as_applied() {
    let (_, id) = counter_ns();
    let holder = node(HOLDER, Counters::default(), |_| {});
    let (a, b) = (epoch(5, "node-1"), epoch(5, "node-2"));
    // node-1 owned the counter under term 5 and its first write was acknowledged; its
    // second reached this holder only.
    assert!(matches!(replica::serve(&holder.durable, promise(&id, a.clone())), Reply::Promised(_)));
    let a_steps =
        vec![step(Version::default(), v(5, "node-1", 1), Some(1)), step(v(5, "node-1", 1), v(5, "node-1", 2), Some(2))];
    assert!(matches!(replica::serve(&holder.durable, replicate(&id, a.clone(), a_steps)), Reply::Replicated));
    // node-2 also took term 5 (terms are chosen by each node), from a copy at node-1's
    // first write, and wrote its own second value.
    let b_steps =
        vec![step(v(5, "node-1", 1), v(5, "node-2", 1), None), step(v(5, "node-2", 1), v(5, "node-2", 2), Some(20))];
    let reply = replica::serve(&holder.durable, replicate(&id, b.clone(), b_steps));
    match reply {
        Reply::NeedSnapshot => {}
        Reply::Replicated => assert_eq!(
            stored_count(&holder, &id),
            20,
            "the holder answered Replicated for node-2's write but holds node-1's unacknowledged one"
        ),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn an_older_install_of_the_same_epoch_does_not_roll_a_copy_back() {
    let (_, id) = counter_ns();
    let holder = node(HOLDER, Counters::default(), |_| {});
    let b = epoch(4, "node-2");
    assert!(matches!(replica::serve(&holder.durable, promise(&id, b.clone())), Reply::Promised(_)));
    let steps = (0..7)
        .map(|i| step(if i == 0 { Version::default() } else { v(4, "node-2", i) }, v(4, "node-2", i + 1), Some(i + 1)))
        .collect();
    assert!(matches!(replica::serve(&holder.durable, replicate(&id, b.clone(), steps)), Reply::Replicated));
    // An install of the same owner sent earlier (at its fourth write) arrives late.
    let late = Snapshot { entries: vec![("count".into(), b"4".to_vec())], alarm: None, version: v(4, "node-2", 4) };
    let reply = replica::serve(&holder.durable, install(&id, b, late));
    assert!(matches!(reply, Reply::Replicated), "{reply:?}");
    assert_eq!(stored_count(&holder, &id), 7, "the late install rolled the copy back");
    assert_eq!(stored_version(&holder, &id), v(4, "node-2", 7));
}

#[tokio::test]
async fn an_alarm_whose_clearing_is_fenced_is_not_run_again_as_if_it_had_not_run() {
    let (ns, id) = counter_ns();
    let runs = Arc::new(AtomicUsize::new(0));
    let durable_slot: Arc<OnceLock<Durable>> = Arc::default();
    let slot = durable_slot.clone();
    // While the handler runs, a newer owner takes the object over (its promise reaches
    // this node): the handler ran, but clearing the alarm is fenced.
    let during = Arc::new(move || {
        if let Some(durable) = slot.get() {
            let promise = promise_to("node-1", &id, epoch(99, "node-9"));
            let _ = replica::serve(durable, promise);
        }
    });
    let classes = Counters { runs: runs.clone(), during_alarm: Some(during) };
    let at_ms = object::now_ms() - 1_000;
    let node = node("node-1", classes, |storage| {
        let copy = storage::ObjectStorage::new(storage.clone());
        copy.apply(&id, &[Write::SetAlarm(Some(at_ms))], &holder_state(Epoch::default(), Version::default()))
            .expect("alarm");
    });
    let _ = durable_slot.set(node.durable.clone());
    node.publish.send_replace(published(&node.me, vec![node.me.clone()], 1));
    let outcome = node.durable.call(&ns, id, Event::Alarm { at_ms, retry: 0 }).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the alarm handler ran again after it had run (outcome {outcome:?})");
    assert!(
        !matches!(outcome, Err(DurableError::NotOwner | DurableError::Fenced(_))),
        "an event that ran must not be answered as one that did not: {outcome:?}"
    );
}

#[tokio::test]
async fn a_node_serves_once_its_first_view_is_published() {
    let (ns, id) = counter_ns();
    let node = node("node-1", Counters::default(), |_| {});
    let (me, publish) = (node.me.clone(), node.publish.clone());
    // Published while the call waits: the call goes on and is answered.
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        publish.send_replace(published(&me, vec![me.clone()], 1));
    });
    match node.durable.call(&ns, id, increment()).await {
        Ok(EventOutcome::Response(response)) => assert_eq!(response.body, b"1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_request_for_another_node_is_refused_and_changes_nothing() {
    let (_, id) = counter_ns();
    let holder = node(HOLDER, Counters::default(), |_| {});
    let misaddressed = promise_to("node-7", &id, epoch(1, "node-1"));
    let reply = replica::serve(&holder.durable, misaddressed);
    assert!(matches!(&reply, Reply::Failed { message, .. } if message.contains("node-7")), "{reply:?}");
    assert_eq!(holder.durable.inner.storage.state(&id).expect("state"), None, "nothing was promised");
}

#[test]
fn an_epoch_is_promised_once() {
    let (_, id) = counter_ns();
    let holder = node(HOLDER, Counters::default(), |_| {});
    let e = epoch(2, "node-1");
    assert!(matches!(replica::serve(&holder.durable, promise(&id, e.clone())), Reply::Promised(_)));
    // The same epoch again would be a second activation of it (node-1 restarted and lost
    // its own promise): refused, so node-1 takes a newer term instead.
    let reply = replica::serve(&holder.durable, promise(&id, e.clone()));
    assert!(matches!(&reply, Reply::Fenced { promised } if *promised == e), "{reply:?}");
}
