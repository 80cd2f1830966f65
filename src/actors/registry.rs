//! The registry finds or starts the actor for an id. Concurrent callers get the same actor: the
//! first one loads the state and starts it, the others wait on the same cell. Actors leave the
//! registry themselves when they passivate; a request that races with that retries once.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::classroom::{Apply, ClassroomActor, ClassroomActorConfig, ClassroomData, Delta, Reload};
use super::runtime::ActorRuntime;
use super::student::{
    ReloadClassrooms, StudentActor, StudentActorConfig, StudentChanged, SubmitAnswer,
};
use super::writer::WriterHandle;
use crate::bus::{BusStats, ClassEvent, EventBus, EventSink, Presence, StreamPos};
use crate::cluster::Cluster;
use crate::cluster::limits::SharedLimits;
use crate::cluster::students::{StudentLink, StudentNews, StudentNewsSink};
use crate::config::{ActorSettings, Settings, SubmissionSettings, WsSettings};
use crate::domain::ids::{ClassroomId, UserId};
use crate::error::AppError;
use crate::metrics::Refusals;
use crate::store::Store;

/// A class's place in the registry. `dirty` exists before the actor does: an event that arrives
/// while the actor is loading cannot be delivered, so it marks the slot and the actor reloads
/// once started (the database has the event's effects: events are published after the commit).
#[derive(Default)]
struct ClassroomSlot {
    dirty: Arc<AtomicBool>,
    addr: OnceCell<Addr<ClassroomActor>>,
}

pub struct Registry {
    me: Weak<Registry>,
    runtime: Mutex<ActorRuntime>,
    store: Store,
    writer: WriterHandle,
    bus: Arc<dyn EventBus>,
    actors: ActorSettings,
    submissions: SubmissionSettings,
    ws: WsSettings,
    /// Counts the submissions the students' rate limit refuses.
    refusals: Refusals,
    /// The students' rate limits counted by every instance (Redis), when configured.
    limits: Option<Arc<SharedLimits>>,
    students: DashMap<UserId, Arc<OnceCell<Addr<StudentActor>>>>,
    classrooms: DashMap<ClassroomId, Arc<ClassroomSlot>>,
    /// Students online on this instance (their actors keep it): a class's actor that starts
    /// after its students connected reads their presence here.
    presence: DashMap<UserId, Presence>,
    /// Reloads from the database that failed (each retry counts), for `/metrics`.
    classroom_reload_failures: AtomicU64,
    student_reload_failures: AtomicU64,
    /// Class reloads asked while one was running (each runs after it).
    classroom_reloads_queued: AtomicU64,
    /// With Redis: the news of students' changes between instances (`attach_cluster`).
    student_link: OnceLock<Arc<StudentLink>>,
}

/// Which actor's reload failed (`Registry::count_reload_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadKind {
    Student,
    Classroom,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("students", &self.students.len())
            .field("classrooms", &self.classrooms.len())
            .finish()
    }
}

impl Registry {
    /// Reads the actor, submission and socket settings of `settings`; `refusals` counts what
    /// the students' rate limit refuses; `limits`: the rate limits shared with the other
    /// instances (Redis), when configured.
    pub fn new(
        runtime: ActorRuntime,
        store: Store,
        writer: WriterHandle,
        bus: Arc<dyn EventBus>,
        settings: &Settings,
        refusals: Refusals,
        limits: Option<Arc<SharedLimits>>,
    ) -> Arc<Registry> {
        let registry = Arc::new_cyclic(|me| Registry {
            me: me.clone(),
            runtime: Mutex::new(runtime),
            store,
            writer,
            bus,
            actors: settings.actors.clone(),
            submissions: settings.submissions.clone(),
            ws: settings.ws.clone(),
            refusals,
            limits,
            students: DashMap::new(),
            classrooms: DashMap::new(),
            presence: DashMap::new(),
            classroom_reload_failures: AtomicU64::new(0),
            student_reload_failures: AtomicU64::new(0),
            classroom_reloads_queued: AtomicU64::new(0),
            student_link: OnceLock::new(),
        });
        let sink: Weak<dyn EventSink> = Arc::downgrade(&registry) as Weak<dyn EventSink>;
        registry.bus.attach(sink);
        registry
    }

    /// With Redis (`cluster`), tells the other instances of each change of a student's state
    /// committed here and hears theirs (`cluster::students`). Call once, on the tokio runtime.
    pub fn attach_cluster(self: &Arc<Self>, cluster: Option<&Arc<Cluster>>) {
        if let Some(cluster) = cluster {
            let sink = Arc::downgrade(self) as Weak<dyn StudentNewsSink>;
            let link = StudentLink::start(cluster.clone(), sink);
            if let Err(link) = self.student_link.set(link) {
                link.stop();
            }
        }
    }

    /// The student link, when Redis is set (`/metrics`).
    pub fn student_link(&self) -> Option<&Arc<StudentLink>> {
        self.student_link.get()
    }

    /// A change of the student's state committed here: the other instances' actors of that
    /// student reload, and push `answer` to the sockets they hold. Never waits.
    pub fn tell_student_changed(&self, student: UserId, answer: Option<&SubmitAnswer>) {
        if let Some(link) = self.student_link.get() {
            let answer = answer.and_then(|a| serde_json::to_string(a).ok());
            link.tell(student.0, answer);
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn writer(&self) -> &WriterHandle {
        &self.writer
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.actors.request_timeout_ms)
    }

    /// How long an actor's load from the database may take (then it fails, as a database error).
    pub fn load_timeout(&self) -> Duration {
        Duration::from_millis(self.actors.load_timeout_ms)
    }

    /// Students and classrooms with a live actor here (slots still loading, or whose load
    /// failed, do not count).
    pub fn counts(&self) -> (usize, usize) {
        let students = self
            .students
            .iter()
            .filter(|c| c.get().is_some_and(|a| a.connected()))
            .count();
        let classrooms = self
            .classrooms
            .iter()
            .filter(|s| s.addr.get().is_some_and(|a| a.connected()))
            .count();
        (students, classrooms)
    }

    /// What the event bus carried for this instance (`/metrics`).
    pub fn bus_stats(&self) -> BusStats {
        self.bus.stats()
    }

    pub fn count_reload_failure(&self, kind: ReloadKind) {
        match kind {
            ReloadKind::Student => &self.student_reload_failures,
            ReloadKind::Classroom => &self.classroom_reload_failures,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_reload_queued(&self) {
        self.classroom_reloads_queued
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Class reloads asked while one was running, so far.
    pub fn reloads_queued(&self) -> u64 {
        self.classroom_reloads_queued.load(Ordering::Relaxed)
    }

    /// Failed reloads so far: (students, classrooms).
    pub fn reload_failures(&self) -> (u64, u64) {
        (
            self.student_reload_failures.load(Ordering::Relaxed),
            self.classroom_reload_failures.load(Ordering::Relaxed),
        )
    }

    fn arbiter<K: Hash>(&self, key: K) -> ArbiterHandle {
        let runtime = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        runtime.arbiter_for(key).clone()
    }

    /// The student's actor, loading the student's progress and classes if it is not running.
    pub async fn student(&self, id: UserId) -> anyhow::Result<Addr<StudentActor>> {
        let cell = self.students.entry(id).or_default().clone();
        let addr = cell
            .get_or_try_init(|| async {
                // A turn at the pool (bounded waiting, store/admission.rs), then the whole load
                // within load_timeout: a load that starts has the time to finish.
                let turn = self.store.admit().await?;
                let loading = async {
                    let state = self.store.load_student_state(id).await?;
                    let classrooms = self.store.student_classroom_ids(id).await?;
                    let recent = self.recent_attempt_times(id).await?;
                    Ok::<_, anyhow::Error>((state, classrooms, recent))
                };
                let ((progress, version), classrooms, recent) =
                    tokio::time::timeout(self.load_timeout(), loading)
                        .await
                        .map_err(|_| LoadTimedOut)??;
                drop(turn);
                let config = StudentActorConfig {
                    writer: self.writer.clone(),
                    registry: self.me.clone(),
                    rate_limit_per_hour: self.submissions.rate_limit_per_hour,
                    refusals: self.refusals.clone(),
                    hint_reveals_per_minute: self.submissions.hint_reveals_per_minute,
                    limits: self.limits.clone(),
                    idle_timeout: Duration::from_secs(self.actors.idle_timeout_secs),
                    stuck_failed_attempts: self.ws.stuck_failed_attempts,
                    stuck_after: Duration::from_secs(self.ws.stuck_after_secs),
                    presence_interval: Duration::from_millis(self.ws.presence_interval_ms),
                };
                let capacity = self.actors.mailbox_capacity;
                let actor =
                    StudentActor::new(progress, classrooms, recent, config).at_version(version);
                Ok::<_, anyhow::Error>(StudentActor::start_in_arbiter(
                    &self.arbiter(("student", id)),
                    move |ctx| {
                        ctx.set_mailbox_capacity(capacity);
                        actor
                    },
                ))
            })
            .await?;
        Ok(addr.clone())
    }

    /// The class's actor, or `None` if there is no such class.
    pub async fn classroom(&self, id: ClassroomId) -> anyhow::Result<Option<Addr<ClassroomActor>>> {
        let slot = self.classrooms.entry(id).or_default().clone();
        let started = slot
            .addr
            .get_or_try_init(|| async {
                // Listening to the class before loading it: every event committed after the
                // load reaches the actor (bounded wait; without a subscription the class loads
                // at once and resyncs when the subscription returns).
                let mut stream = None;
                if let Some(subscribed) = self.bus.watch_class(id)
                    && let Ok(Ok(())) = tokio::time::timeout(self.load_timeout(), subscribed).await
                {
                    // Subscribed: the class's shared stream as it is before the load (every
                    // event up to its offset was committed before the load reads).
                    stream = self.bus.stream_head(id).await;
                }
                let turn = self.store.admit().await?;
                let loaded = ClassroomData::load_within(&self.store, id, self.load_timeout());
                let loaded = loaded.await;
                drop(turn);
                let Some(data) = loaded? else {
                    return Err(NoSuchClassroom.into());
                };
                let config = ClassroomActorConfig {
                    store: self.store.clone(),
                    registry: self.me.clone(),
                    ring_capacity: self.actors.classroom_ring_size,
                    idle_timeout: Duration::from_secs(self.actors.idle_timeout_secs),
                    load_timeout: self.load_timeout(),
                    dirty: slot.dirty.clone(),
                    stream,
                };
                let capacity = self.actors.mailbox_capacity;
                let actor = ClassroomActor::new(id, data, config);
                Ok::<_, anyhow::Error>(ClassroomActor::start_in_arbiter(
                    &self.arbiter(("classroom", id)),
                    move |ctx| {
                        ctx.set_mailbox_capacity(capacity);
                        actor
                    },
                ))
            })
            .await;
        match started {
            Ok(addr) => Ok(Some(addr.clone())),
            Err(e) if e.is::<NoSuchClassroom>() => {
                self.classrooms
                    .remove_if(&id, |_, s| s.addr.get().is_none());
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends to the student's actor and waits (bounded) for the answer. An actor that stopped in
    /// between (passivation) is replaced once.
    pub async fn ask_student<M>(&self, id: UserId, msg: M) -> Result<M::Result, AppError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        StudentActor: Handler<M>,
        <StudentActor as Actor>::Context: ToEnvelope<StudentActor, M>,
    {
        for _ in 0..2 {
            let addr = tokio::time::timeout(self.request_timeout(), self.student(id))
                .await
                .map_err(|_| busy())?
                .map_err(load_error)?;
            match tokio::time::timeout(self.request_timeout(), addr.send(msg.clone())).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(MailboxError::Closed)) => self.forget_student(id, &addr),
                Ok(Err(MailboxError::Timeout)) | Err(_) => return Err(busy()),
            }
        }
        Err(busy())
    }

    /// Same for a class's actor; `NotFound` if there is no such class.
    pub async fn ask_classroom<M>(&self, id: ClassroomId, msg: M) -> Result<M::Result, AppError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        ClassroomActor: Handler<M>,
        <ClassroomActor as Actor>::Context: ToEnvelope<ClassroomActor, M>,
    {
        for _ in 0..2 {
            let loading = tokio::time::timeout(self.request_timeout(), self.classroom(id));
            let Some(addr) = loading.await.map_err(|_| busy())?.map_err(load_error)? else {
                return Err(AppError::NotFound("Classe introuvable."));
            };
            match tokio::time::timeout(self.request_timeout(), addr.send(msg.clone())).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(MailboxError::Closed)) => self.forget_classroom(id, &addr),
                Ok(Err(MailboxError::Timeout)) | Err(_) => return Err(busy()),
            }
        }
        Err(busy())
    }

    /// The student's actor if it is running here (without starting it).
    pub fn running_student(&self, id: UserId) -> Option<Addr<StudentActor>> {
        self.students.get(&id).and_then(|cell| cell.get().cloned())
    }

    /// The class's actor if it is running here (without starting it).
    pub fn running_classroom(&self, id: ClassroomId) -> Option<Addr<ClassroomActor>> {
        self.classrooms
            .get(&id)
            .and_then(|slot| slot.addr.get().cloned())
    }

    /// Kept by the student's actor: online students only.
    pub fn set_presence(&self, student: UserId, presence: &Presence) {
        if presence.online {
            self.presence.insert(student, presence.clone());
        } else {
            self.presence.remove(&student);
        }
    }

    pub fn presence(&self, student: UserId) -> Option<Presence> {
        self.presence.get(&student).map(|p| p.clone())
    }

    pub fn forget_student(&self, id: UserId, addr: &Addr<StudentActor>) {
        self.students
            .remove_if(&id, |_, cell| cell.get().is_some_and(|a| a == addr));
    }

    pub fn forget_classroom(&self, id: ClassroomId, addr: &Addr<ClassroomActor>) {
        self.classrooms
            .remove_if(&id, |_, slot| slot.addr.get() == Some(addr));
    }

    pub fn publish(&self, classroom: ClassroomId, event: Arc<ClassEvent>) {
        self.bus.publish(classroom, event);
    }

    /// The class's shared stream now (`EventBus::stream_head`).
    pub fn stream_head(
        &self,
        classroom: ClassroomId,
    ) -> futures_util::future::BoxFuture<'static, Option<StreamPos>> {
        self.bus.stream_head(classroom)
    }

    /// The events `after + 1 ..= upto` of the class's shared stream `epoch`, if it still holds
    /// them all (`EventBus::recent_events`): a dashboard resuming here from another instance.
    pub async fn recent_class_events(
        &self,
        classroom: ClassroomId,
        epoch: u64,
        after: u64,
        upto: u64,
    ) -> Option<Vec<Delta>> {
        let events = self
            .bus
            .recent_events(classroom, epoch, after, upto)
            .await?;
        Some(
            events
                .into_iter()
                .map(|(offset, event)| Delta {
                    offset,
                    event: Arc::new(event),
                })
                .collect(),
        )
    }

    /// A student joined or left a class (or was removed): their actor, if running, sends events
    /// to the new set of classes, and the classes' actors, if running, reload their roster.
    pub async fn membership_changed(&self, student: UserId, classroom: ClassroomId) {
        if let Some(addr) = self.students.get(&student).and_then(|c| c.get().cloned()) {
            // If the database fails here, the actor reloads its classes itself (retrying):
            // replacing it instead could leave two actors of one student alive. `do_send`
            // ignores the mailbox bound for this rare message, so a busy actor does not miss it.
            let ids = match self.store.student_classroom_ids(student).await {
                Ok(ids) => Some(ids),
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "loading a student's classes failed"
                    );
                    None
                }
            };
            addr.do_send(ReloadClassrooms {
                ids,
                tries_left: 10,
            });
        }
        self.classroom_changed(classroom);
    }

    /// Something a class's actor loaded changed (roster, a student's settings): reload it.
    pub fn classroom_changed(&self, classroom: ClassroomId) {
        if let Some(slot) = self.classrooms.get(&classroom).map(|s| s.clone()) {
            match slot.addr.get() {
                Some(addr) if addr.try_send(Reload::default()).is_ok() => {}
                _ => slot.dirty.store(true, Ordering::Release),
            }
        }
    }

    /// `classroom_changed`, answering once the class's actor has applied a reload that read the
    /// database after the change (at most `request_timeout`; at once if no actor runs here: one
    /// that starts loads the change). A read that follows then sees the change.
    pub async fn classroom_changed_and_applied(&self, classroom: ClassroomId) {
        let Some(slot) = self.classrooms.get(&classroom).map(|s| s.clone()) else {
            return;
        };
        let Some(addr) = slot.addr.get() else {
            // Still loading: it reloads once started.
            slot.dirty.store(true, Ordering::Release);
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if addr.try_send(Reload { applied: Some(tx) }).is_err() {
            slot.dirty.store(true, Ordering::Release);
            return;
        }
        if tokio::time::timeout(self.request_timeout(), rx)
            .await
            .is_err()
        {
            tracing::warn!("a classroom did not apply a change in time");
        }
    }

    /// When the student's stored attempts of the last hour were made, oldest first (the rate
    /// limit's window, rebuilt from the database).
    pub async fn recent_attempt_times(&self, id: UserId) -> anyhow::Result<Vec<i64>> {
        self.store
            .attempt_times_since(
                id,
                crate::domain::time::now_ms() - super::student::HOUR_MS,
                self.submissions.rate_limit_per_hour,
            )
            .await
    }

    /// Stops every actor (after the writer has committed everything they handed it).
    pub fn shutdown(&self) {
        if let Some(link) = self.student_link.get() {
            link.stop();
        }
        self.students.clear();
        self.classrooms.clear();
        let mut runtime = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        runtime.stop();
    }
}

impl EventSink for Registry {
    /// Hands a class's event to its actor on this instance, if one is running (one that is not
    /// running loads the current state from the database when it starts).
    fn deliver(&self, classroom: ClassroomId, event: Arc<ClassEvent>, pos: Option<StreamPos>) {
        let Some(slot) = self.classrooms.get(&classroom).map(|s| s.clone()) else {
            return;
        };
        match slot.addr.get() {
            Some(addr) if addr.try_send(Apply { event, pos }).is_ok() => {}
            Some(_) => {
                // Mailbox full or actor stopping: it reloads from the database instead.
                slot.dirty.store(true, Ordering::Release);
                tracing::warn!("classroom event not delivered; the classroom will reload");
            }
            // Still loading: it reloads once started.
            None => slot.dirty.store(true, Ordering::Release),
        }
    }

    /// The class's actor (every class's) reloads at its next check and starts a new stream:
    /// its dashboards take a snapshot (`ClassroomActor::restart_stream`).
    fn resync(&self, classroom: Option<ClassroomId>) {
        let mark = |slot: &ClassroomSlot| slot.dirty.store(true, Ordering::Release);
        match classroom {
            Some(id) => {
                if let Some(slot) = self.classrooms.get(&id) {
                    mark(&slot);
                }
            }
            None => self.classrooms.iter().for_each(|slot| mark(&slot)),
        }
    }

    fn classes(&self) -> Vec<ClassroomId> {
        self.classrooms.iter().map(|slot| *slot.key()).collect()
    }
}

impl StudentNewsSink for Registry {
    fn student_news(&self, news: StudentNews) {
        let Some(addr) = self.running_student(UserId(news.student)) else {
            // No actor here: one that starts loads the change.
            return;
        };
        let answer = news
            .answer
            .and_then(|a| serde_json::from_str::<SubmitAnswer>(&a).ok())
            .map(Arc::new);
        // `do_send`: a busy actor must not miss it (rare, one per change elsewhere).
        addr.do_send(StudentChanged { answer });
    }

    fn student_news_resync(&self) {
        let running: Vec<_> = self
            .students
            .iter()
            .filter_map(|cell| cell.get().cloned())
            .collect();
        for addr in running {
            addr.do_send(StudentChanged { answer: None });
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no such classroom")]
struct NoSuchClassroom;

/// An actor's load from the database took longer than `actors.load_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("loading from the database took longer than actors.load_timeout_ms")]
pub struct LoadTimedOut;

/// A load that timed out is the database being slow: 503, to retry; any other failure is 500.
fn load_error(e: anyhow::Error) -> AppError {
    if e.is::<LoadTimedOut>() {
        busy()
    } else {
        // A pool wait or a statement timeout is an overload (503), anything else a 500.
        AppError::from(e)
    }
}

fn busy() -> AppError {
    AppError::Unavailable {
        message: "Le serveur est très sollicité ; réessayez dans un instant.".into(),
        retry_after_secs: 2,
    }
}
