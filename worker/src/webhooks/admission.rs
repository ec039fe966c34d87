//! Fair per-endpoint admission in a worker process. At most `cap` deliveries of an endpoint
//! send at once; up to `line` more wait for a slot in arrival order (tokio's semaphore is
//! FIFO), holding a job but no connection. When the line is full the endpoint's lane turns
//! *parked*: every further delivery of it lets its message go (its row stays due in the
//! store, costing nothing) until the line has emptied; then the oldest due deliveries are
//! read back from the store, in publish order and already claimed (at most
//! `READ_BACK_ROUNDS` rounds of the cap at a time), into the line. While a backlog drains,
//! the next read-back starts when the line is half empty, continuing after the last id read
//! (a keyset cursor, so nothing in line is read twice), so the line never runs dry between
//! read-backs. A read-back from the start, on an empty line, that finds no more than it asked
//! for ends the episode: the lane leaves parked mode and reads from the start once more, for
//! anything that parked while the last one ran. Nothing circles through the queue while it
//! waits, and order is kept: newer deliveries never pass parked ones.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use switchyard_shared::{CancellationToken, telemetry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// One endpoint's slots and line in this process.
struct Lane {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Deliveries of this endpoint wait in the store: new ones park behind them.
    parked: AtomicBool,
    /// A read-back from the store is asked for or running.
    unparking: AtomicBool,
    /// The last id read back in this parked episode: the next read-back continues after it.
    cursor: Mutex<Option<String>>,
    /// With a cursor, the next read-back starts once no more than this many wait.
    refill_at: usize,
    /// The lane has just left parked mode and one more read-back from the start is due: a
    /// delivery that parked while the last one ran is found by it (its row was written
    /// before its message could park, so before the lane left).
    closing: AtomicBool,
}

pub(super) struct Admission {
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    cap: usize,
    line: usize,
    max_wait: Duration,
    /// Endpoints whose parked deliveries should be read back into their line.
    unpark: mpsc::UnboundedSender<String>,
    /// Cancelled at shutdown: nobody waits in line through the grace period.
    stopping: CancellationToken,
}

/// The right to send to an endpoint; gives the slot back (and reads parked work back when
/// the line has emptied) on drop.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    lane: Arc<Lane>,
    endpoint_id: String,
    unpark: mpsc::UnboundedSender<String>,
    stopping: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The permit goes back after this body; the next in line (if any) gets it.
        maybe_unpark(&self.lane, &self.endpoint_id, &self.unpark, &self.stopping);
    }
}

/// Asks for parked deliveries to be read back: from the start once the line is empty, or
/// after the cursor once it is half empty. Never once the process is stopping: whatever it
/// read back would be given back at once (every admission then says `Stopping`), and the
/// line, emptied by that, would ask again — a loop of claims and releases through the
/// grace period (4,000 a second seen with dead endpoints' backlogs). The rows stay due for
/// the other workers.
fn maybe_unpark(
    lane: &Lane,
    endpoint_id: &str,
    unpark: &mpsc::UnboundedSender<String>,
    stopping: &CancellationToken,
) {
    if !lane.parked.load(Ordering::Acquire) || stopping.is_cancelled() {
        return;
    }
    let waiting = lane.waiting.load(Ordering::Acquire);
    let due = waiting == 0
        || (waiting <= lane.refill_at && lane.cursor.lock().expect("lane cursor lock").is_some());
    if due && !lane.unparking.swap(true, Ordering::AcqRel) {
        let _ = unpark.send(endpoint_id.to_owned());
    }
}

/// What a read-back is to fetch: due deliveries after `after` (from the start: `None`),
/// at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReadBack {
    pub after: Option<String>,
    pub limit: usize,
}

/// How a read-back went.
pub(super) enum ReadBackDone {
    /// The store could not be read: try again later, as from an empty line.
    Failed,
    /// `got` deliveries were read, the last with id `last`.
    Read { got: usize, last: Option<String> },
}

pub(super) enum Admitted {
    Go(Slot),
    /// Parked: the message is let go, the row stays due and is read back in its turn.
    Parked,
    /// The process is stopping: put the message back for another worker.
    Stopping,
}

/// Where a delivery comes from: its queue message, or a read-back of parked ones (which
/// take their place in line however the lane stands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Queue,
    Store,
}

impl Admission {
    /// `max_wait` keeps a waiting delivery well inside the job timeout.
    pub(super) fn new(
        cap: usize,
        line: usize,
        max_wait: Duration,
        stopping: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (unpark, parked) = mpsc::unbounded_channel();
        let lanes = Mutex::new(HashMap::new());
        (Self { lanes, cap, line, max_wait, unpark, stopping }, parked)
    }

    fn lane(&self, endpoint_id: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().expect("admission lanes lock");
        Arc::clone(lanes.entry(endpoint_id.to_owned()).or_insert_with(|| {
            Arc::new(Lane {
                slots: Arc::new(Semaphore::new(self.cap)),
                waiting: AtomicUsize::new(0),
                parked: AtomicBool::new(false),
                unparking: AtomicBool::new(false),
                cursor: Mutex::new(None),
                refill_at: self.read_back_size() / 2,
                closing: AtomicBool::new(false),
            })
        }))
    }

    /// How many deliveries a line of read-backs holds: they are claimed as they are read,
    /// so no more than `READ_BACK_ROUNDS` rounds of the cap (and never more than the line).
    fn read_back_size(&self) -> usize {
        self.line.min(self.cap * super::READ_BACK_ROUNDS).max(1)
    }

    /// What the read-back of `endpoint_id` asked for now is to fetch: after the cursor,
    /// enough to fill the line, or a line's worth from the start when the line is empty.
    pub(super) fn read_back(&self, endpoint_id: &str) -> ReadBack {
        let lane = self.lane(endpoint_id);
        let waiting = lane.waiting.load(Ordering::Acquire);
        let cursor = lane.cursor.lock().expect("lane cursor lock").clone();
        let size = self.read_back_size();
        match cursor {
            Some(after) if waiting > 0 => {
                ReadBack { after: Some(after), limit: size.saturating_sub(waiting).max(1) }
            }
            _ => ReadBack { after: None, limit: size },
        }
    }

    /// The read-back `plan` of `endpoint_id` is in line. One from the start that found no
    /// more than it asked for ends the episode: the lane leaves parked mode, then reads from
    /// the start once more (`closing`), so nothing parked meanwhile is left behind. One after
    /// the cursor that came up short sends the next one back to the start, once the line is
    /// empty. A full read-back while closing resumes the episode.
    pub(super) fn unparked(&self, endpoint_id: &str, plan: &ReadBack, done: ReadBackDone) {
        let lane = self.lane(endpoint_id);
        let mut again = false;
        {
            let mut cursor = lane.cursor.lock().expect("lane cursor lock");
            match done {
                ReadBackDone::Failed => {
                    *cursor = None;
                    again = lane.closing.load(Ordering::Acquire);
                }
                ReadBackDone::Read { got, .. } if got < plan.limit => {
                    *cursor = None;
                    if plan.after.is_none() && !lane.closing.swap(false, Ordering::AcqRel) {
                        lane.parked.store(false, Ordering::Release);
                        lane.closing.store(true, Ordering::Release);
                        again = true;
                    }
                }
                ReadBackDone::Read { last, .. } => {
                    *cursor = last;
                    if lane.closing.swap(false, Ordering::AcqRel) {
                        lane.parked.store(true, Ordering::Release);
                    }
                }
            }
        }
        if again && !self.stopping.is_cancelled() {
            // Still `unparking`: the closing read-back is asked for at once.
            let _ = self.unpark.send(endpoint_id.to_owned());
            return;
        }
        lane.unparking.store(false, Ordering::Release);
        maybe_unpark(&lane, endpoint_id, &self.unpark, &self.stopping);
    }

    /// The process is stopping: read nothing back (a read-back asked for before is dropped).
    pub(super) fn stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Waits in line for a slot of `endpoint_id`, or parks. The decision to queue is made
    /// before the first await, so deliveries line up in the order their jobs started.
    pub(super) async fn admit(&self, endpoint_id: &str, from: Source) -> Admitted {
        let lane = self.lane(endpoint_id);
        if from == Source::Queue && lane.parked.load(Ordering::Acquire) {
            return self.park(&lane, endpoint_id);
        }
        let slot = |permit| Slot {
            _permit: permit,
            lane: Arc::clone(&lane),
            endpoint_id: endpoint_id.to_owned(),
            unpark: self.unpark.clone(),
            stopping: self.stopping.clone(),
        };
        // Nobody in line and a slot free: go at once (the common case).
        if lane.waiting.load(Ordering::Acquire) == 0
            && let Ok(permit) = Arc::clone(&lane.slots).try_acquire_owned()
        {
            return Admitted::Go(slot(permit));
        }
        if lane.waiting.fetch_add(1, Ordering::AcqRel) >= self.line && from == Source::Queue {
            lane.waiting.fetch_sub(1, Ordering::AcqRel);
            return self.park(&lane, endpoint_id);
        }
        metrics::gauge!(telemetry::WEBHOOK_WAITING).increment(1.0);
        let waited = tokio::select! {
            waited = tokio::time::timeout(self.max_wait, Arc::clone(&lane.slots).acquire_owned()) => Some(waited),
            () = self.stopping.cancelled() => None,
        };
        lane.waiting.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(telemetry::WEBHOOK_WAITING).decrement(1.0);
        match waited {
            Some(Ok(Ok(permit))) => Admitted::Go(slot(permit)),
            Some(_) => self.park(&lane, endpoint_id),
            None => Admitted::Stopping,
        }
    }

    fn park(&self, lane: &Lane, endpoint_id: &str) -> Admitted {
        lane.parked.store(true, Ordering::Release);
        metrics::counter!(telemetry::WEBHOOK_DEFERRED, "reason" => "parked").increment(1);
        // Nothing in line to empty it (say the wait ran out): read back now.
        maybe_unpark(lane, endpoint_id, &self.unpark, &self.stopping);
        Admitted::Parked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(cap: usize, line: usize) -> (Arc<Admission>, mpsc::UnboundedReceiver<String>) {
        let (a, rx) = Admission::new(cap, line, Duration::from_secs(5), CancellationToken::new());
        (Arc::new(a), rx)
    }

    #[tokio::test]
    async fn waiters_get_slots_in_arrival_order() {
        let (a, _rx) = admission(1, 10);
        let Admitted::Go(first) = a.admit("ep", Source::Queue).await else {
            panic!("first should go")
        };
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (mine, order) = (Arc::clone(&a), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let Admitted::Go(slot) = mine.admit("ep", Source::Queue).await else {
                    panic!("should wait")
                };
                order.lock().unwrap().push(i);
                drop(slot);
            }));
            // Each waiter is in line before the next one starts.
            while a.lane("ep").waiting.load(Ordering::Acquire) < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn over_the_line_parks_and_the_empty_line_unparks() {
        let (a, mut rx) = admission(1, 1);
        let Admitted::Go(first) = a.admit("ep", Source::Queue).await else {
            panic!("first should go")
        };
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(
                async move { matches!(a.admit("ep", Source::Queue).await, Admitted::Go(_)) },
            )
        };
        while a.lane("ep").waiting.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        assert!(
            matches!(a.admit("ep", Source::Queue).await, Admitted::Parked),
            "third is over the line"
        );
        // Another endpoint is not held up.
        assert!(matches!(a.admit("other", Source::Queue).await, Admitted::Go(_)));
        assert!(rx.try_recv().is_err(), "nothing to unpark while the line is busy");
        drop(first);
        assert!(waiter.await.unwrap(), "the waiter got the slot");
        assert_eq!(rx.recv().await.as_deref(), Some("ep"), "the parked one is read back");
        // Until the read-back has drained the store, new deliveries park behind it...
        assert!(matches!(a.admit("ep", Source::Queue).await, Admitted::Parked));
        // ...while those read back take their place in line.
        assert!(matches!(a.admit("ep", Source::Store).await, Admitted::Go(_)));
        let plan = a.read_back("ep");
        assert_eq!(plan, ReadBack { after: None, limit: 1 }, "an empty line reads from the start");
        a.unparked("ep", &plan, ReadBackDone::Read { got: 0, last: None });
        assert!(matches!(a.admit("ep", Source::Queue).await, Admitted::Go(_)));
    }

    #[tokio::test]
    async fn a_draining_backlog_is_read_back_when_the_line_is_half_empty() {
        let (a, mut rx) = admission(1, 4);
        let lane = a.lane("ep");
        lane.parked.store(true, Ordering::Release);
        lane.unparking.store(true, Ordering::Release);
        // A full read-back went into line: the next continues after its last id...
        let plan = ReadBack { after: None, limit: 4 };
        lane.waiting.store(4, Ordering::Release);
        a.unparked("ep", &plan, ReadBackDone::Read { got: 4, last: Some("d4".into()) });
        assert!(rx.try_recv().is_err(), "the line is full: no read-back yet");
        // ...once no more than half the line waits, before it runs dry.
        lane.waiting.store(2, Ordering::Release);
        maybe_unpark(&lane, "ep", &a.unpark, &a.stopping);
        assert_eq!(rx.try_recv().ok().as_deref(), Some("ep"));
        let next = a.read_back("ep");
        assert_eq!(
            next,
            ReadBack { after: Some("d4".into()), limit: 2 },
            "fills the line after d4"
        );
        // Short: the store is nearly drained; the episode ends with a read from the start.
        a.unparked("ep", &next, ReadBackDone::Read { got: 1, last: Some("d5".into()) });
        assert!(lane.parked.load(Ordering::Acquire), "still parked until a read from the start");
        assert!(rx.try_recv().is_err(), "no cursor: waits for an empty line");
        lane.waiting.store(0, Ordering::Release);
        maybe_unpark(&lane, "ep", &a.unpark, &a.stopping);
        assert_eq!(rx.try_recv().ok().as_deref(), Some("ep"));
        let last = a.read_back("ep");
        assert_eq!(last, ReadBack { after: None, limit: 4 });
        a.unparked("ep", &last, ReadBackDone::Read { got: 0, last: None });
        assert!(
            !lane.parked.load(Ordering::Acquire),
            "drained: the lane takes queue messages again"
        );
        // One more read from the start, for what parked while that one ran.
        assert_eq!(rx.try_recv().ok().as_deref(), Some("ep"), "the closing read-back");
        let closing = a.read_back("ep");
        assert_eq!(closing, ReadBack { after: None, limit: 4 });
        a.unparked("ep", &closing, ReadBackDone::Read { got: 1, last: Some("d9".into()) });
        assert!(!lane.parked.load(Ordering::Acquire));
        assert!(rx.try_recv().is_err(), "the episode is over");
        assert!(!lane.unparking.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_full_closing_read_back_resumes_the_episode() {
        let (a, mut rx) = admission(1, 2);
        let lane = a.lane("ep");
        lane.parked.store(true, Ordering::Release);
        lane.unparking.store(true, Ordering::Release);
        let plan = a.read_back("ep");
        a.unparked("ep", &plan, ReadBackDone::Read { got: 1, last: Some("d1".into()) });
        assert_eq!(rx.try_recv().ok().as_deref(), Some("ep"));
        let closing = a.read_back("ep");
        // A burst arrived meanwhile: the closing read-back is full, so parking goes on.
        a.unparked("ep", &closing, ReadBackDone::Read { got: 2, last: Some("d3".into()) });
        assert!(lane.parked.load(Ordering::Acquire), "parked again behind the backlog");
        assert!(matches!(a.admit("ep", Source::Queue).await, Admitted::Parked));
    }

    #[tokio::test]
    async fn a_wait_past_the_limit_parks() {
        let (a, _rx) = Admission::new(1, 5, Duration::from_millis(20), CancellationToken::new());
        let _held = a.admit("ep", Source::Queue).await;
        assert!(matches!(a.admit("ep", Source::Queue).await, Admitted::Parked));
    }

    /// A delivery of "ep" from `source` waiting in line (once this returns); its task says
    /// whether it left the line because the process is stopping.
    async fn one_in_line(a: &Arc<Admission>, source: Source) -> tokio::task::JoinHandle<bool> {
        let waiter = {
            let a = Arc::clone(a);
            tokio::spawn(async move { matches!(a.admit("ep", source).await, Admitted::Stopping) })
        };
        while a.lane("ep").waiting.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        waiter
    }

    #[tokio::test]
    async fn nothing_is_read_back_once_stopping() {
        let stopping = CancellationToken::new();
        let (a, mut rx) = Admission::new(1, 1, Duration::from_secs(60), stopping.clone());
        let a = Arc::new(a);
        let Admitted::Go(held) = a.admit("ep", Source::Queue).await else { panic!("goes") };
        let waiter = one_in_line(&a, Source::Store).await;
        assert!(matches!(a.admit("ep", Source::Queue).await, Admitted::Parked), "over the line");
        stopping.cancel();
        assert!(a.stopping());
        assert!(waiter.await.unwrap(), "the one in line leaves");
        drop(held);
        // The line is empty and the lane parked: a running process would read back now.
        let plan = a.read_back("ep");
        a.unparked("ep", &plan, ReadBackDone::Read { got: 0, last: None });
        assert!(rx.try_recv().is_err(), "no read-back asked for while stopping");
    }

    #[tokio::test]
    async fn waiters_leave_the_line_at_shutdown() {
        let stopping = CancellationToken::new();
        let (a, _rx) = Admission::new(1, 5, Duration::from_secs(60), stopping.clone());
        let _held = a.admit("ep", Source::Queue).await;
        let a = Arc::new(a);
        let waiter = one_in_line(&a, Source::Queue).await;
        stopping.cancel();
        assert!(waiter.await.unwrap());
    }
}
