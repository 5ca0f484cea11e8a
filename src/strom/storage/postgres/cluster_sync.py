"""The cluster loop of a PostgreSQL engine: every heartbeat (and at once when another broker
NOTIFYs a change) it renews this broker's session, reads the live brokers, re-reads the topics
if they changed, reads every partition's lease, and moves leases toward the balanced placement.

One pass (`sync`):
1. renew the session (membership.py); if it had expired, every lease is lost: release all,
   start a new session;
2. list the live brokers; re-read the topics if their version moved (topic_rows.py);
3. read the leases and follow them: adopt a partition the database says this session owns
   at an epoch not held here (handed over, or created here), release one it says is elsewhere;
4. rebalance (placement.py): acquire partitions whose lease is not valid and that belong here;
   hand over partitions held here that belong to another live broker (appends are refused
   while the commits in flight finish, then one statement moves the lease);
5. tell the listeners (the coordinators) if leadership here changed.

A clean stop hands every lease held here to the next broker in line before leaving, so clients
see NOT_LEADER_OR_FOLLOWER and move on instead of waiting for the session to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

from strom.config.broker import BrokerConfig
from strom.config.text import plural
from strom.storage.api import BrokerRegistration, Leadership, StorageError, UnknownTopic
from strom.storage.postgres.connect import Health, StartupError
from strom.storage.postgres.leases import CHANNEL, Lease, Leases
from strom.storage.postgres.membership import Membership, SessionLost
from strom.storage.postgres.partition import PostgresPartitionLog
from strom.storage.postgres.placement import desired_owner, replicas, succession
from strom.storage.postgres.status import Status
from strom.storage.postgres.topic_rows import TopicRows, read_topics
from strom.storage.topic_registry import TopicRegistry

log = logging.getLogger(__name__)

NOTIFY_DEBOUNCE_S: Final = 0.02  # NOTIFYs arriving together make one pass
LOAD_CONCURRENCY: Final = 4
HELD: Final = (Status.LOADED, Status.STALE, Status.MOVING)

NewLog = Callable[[TopicRows, int], PostgresPartitionLog]  # (topic, index) -> a FENCED log


class ClusterSync:
    def __init__(self, pool: Any, control_pool: Any, health: Health, config: BrokerConfig,
                 registry: TopicRegistry[PostgresPartitionLog], new_log: NewLog) -> None:
        self.pool = pool
        self.control_pool = control_pool
        self.health = health
        self.config = config
        self.node_id = config.node_id
        self.registry = registry
        self.new_log = new_log
        self.members = Membership(control_pool, health,
                                  config.get_int("broker.heartbeat.interval.ms"),
                                  config.get_int("broker.session.timeout.ms"))
        self.leases = Leases(control_pool, health, config.node_id)
        self.topics_version = -1
        self.topic_lock = asyncio.Lock()  # topic changes here, and re-reading them
        self.listeners: list[Callable[[], None]] = []
        self._replicas: dict[tuple[int, int | None, int], tuple[int, ...]] = {}
        self._replicas_live: tuple[BrokerRegistration, ...] = ()  # what _replicas is for
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listening: Any = None
        self._loads: set[asyncio.Task[None]] = set()
        self._load_limit = asyncio.Semaphore(LOAD_CONCURRENCY)
        self._sync_lock = asyncio.Lock()
        self._displaced = False  # another process registered this node id
        self._stopping = False
        self._retired = False  # leases handed over for a clean stop

    # -- state --------------------------------------------------------------------------

    @property
    def session(self) -> int:
        return self.members.session_epoch

    def lease_valid(self) -> bool:
        return self.members.valid()

    def lease_left_s(self) -> float:
        """How long this broker's leases surely last (0 when they may have lapsed)."""
        if self.members.me is None:
            return 0.0
        return max(0.0, self.members.valid_until - self.members.clock())

    def logs(self) -> list[PostgresPartitionLog]:
        return self.registry.all_logs()

    def held(self) -> list[PostgresPartitionLog]:
        return [p for p in self.logs() if p.status in HELD]

    def leadership(self, plog: PostgresPartitionLog, replication_factor: int) -> Leadership:
        lease = self.leases.by_partition.get(plog.partition_id)
        if plog.status in HELD:
            # While the database has not confirmed this broker's session it does not know
            # whether it still leads: it names no leader rather than itself.
            leader: int | None = self.node_id if self.lease_valid() else None
            epoch = plog.leader_epoch
        elif lease is not None and lease.valid(self.members.sessions):
            leader, epoch = lease.owner, lease.epoch
        else:
            leader = None
            epoch = lease.epoch if lease is not None else plog.leader_epoch
        assigned = None if lease is None else lease.assigned
        return Leadership(leader, epoch, self._replicas_for(plog.partition_id, leader,
                                                            replication_factor, assigned))

    def _replicas_for(self, pid: int, leader: int | None, count: int,
                      assigned: tuple[int, ...] | None) -> tuple[int, ...]:
        live = tuple(self.members.live)
        if self._replicas_live != live:
            self._replicas.clear()
            self._replicas_live = live
        key = (pid, leader, count)
        found = self._replicas.get(key) if assigned is None else None
        if found is None:
            found = replicas(pid, leader, live, count, assigned)
            if assigned is None:
                self._replicas[key] = found
        return found

    # -- start, stop ------------------------------------------------------------------------

    async def join(self, me: BrokerRegistration) -> None:
        """Registers (StartupError if the node id is live elsewhere), takes this broker's
        share of the leases, and starts the loop."""
        await self.members.register(me)
        await self.leases.notify()  # the others hand this broker its share at once
        await self._listen()
        await self.sync()
        # The partitions taken at start are loaded before the broker serves (later ones
        # load as they come, and answer retriably meanwhile).
        await asyncio.gather(*list(self._loads), return_exceptions=True)
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def retire(self) -> None:
        """Stops the loop (no more leases taken) and hands every lease held here over."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._loads):
            task.cancel()
        if self.members.me is None or self._retired:
            return
        self._retired = True
        held = self.held()
        for plog in held:  # no more appends here; the commits in flight finish
            plog.status = Status.MOVING
        await asyncio.gather(*(plog.drain() for plog in held), return_exceptions=True)
        # The session ends first, so that no other broker hands a lease back to this one;
        # the leases it still holds are handed over by their epoch, which is unchanged.
        others = [n for n in self.live_ids() if n != self.node_id]
        await self.members.leave()
        try:
            async with self._sync_lock:
                moved = await self._hand_over_all(others)
        except StorageError as exc:
            log.warning("leases not handed over at stop (%s): the other brokers take them "
                        "as they find this broker gone", exc)
            moved = False
        await self.leases.notify()
        self._fire()
        if moved:
            # Keep answering for one heartbeat (NOT_LEADER_OR_FOLLOWER naming the new
            # leaders), by which the brokers that took the leases have adopted them even
            # without the NOTIFY, as Kafka's controlled shutdown moves leadership before the
            # broker closes its sockets.
            await asyncio.sleep(self.members.heartbeat_ms / 1000)

    async def leave(self) -> None:
        """Hands every lease held here over (if `retire` did not), then ends the session."""
        await self.retire()
        if self.members.me is not None:
            await self.members.leave()
            await self.leases.notify()
        await self._unlisten()

    async def _run(self) -> None:
        interval = self.members.heartbeat_ms / 1000
        while not self._stopping:
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                async with asyncio.timeout(interval):
                    await self._wake.wait()
                await asyncio.sleep(NOTIFY_DEBOUNCE_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sync()
            except StorageError as exc:  # the database does not answer: Health logged it
                log.debug("cluster sync failed: %s", exc)
            except Exception:
                log.exception("cluster sync failed")

    def wake(self) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        """A connection LISTENing for other brokers' NOTIFYs (a hint: the heartbeat gets
        there anyway)."""
        if self._listening is not None and not self._listening.is_closed():
            return
        await self._unlisten()
        try:
            conn = await self.control_pool.acquire(timeout=self.members.statement_timeout_s())
        except Exception as exc:
            log.debug("cannot LISTEN for cluster changes: %s", exc)
            return
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except Exception as exc:
            log.debug("cannot LISTEN for cluster changes: %s", exc)
            await self.control_pool.release(conn)
            return
        self._listening = conn

    async def _unlisten(self) -> None:
        conn, self._listening = self._listening, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(CHANNEL, self._notified)
        with contextlib.suppress(Exception):
            await self.control_pool.release(conn)

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload != str(self.node_id):
            self._wake.set()

    # -- one pass -------------------------------------------------------------------------

    async def sync(self) -> None:
        async with self._sync_lock:
            await self._sync()

    async def _sync(self) -> None:
        members = self.members
        assert members.me is not None
        try:
            await members.renew()
        except SessionLost as exc:
            if self.held():
                log.warning("%s", exc)
                self._release_all("this broker's session expired")
                self._fire()
            try:
                await members.register(members.me, previous=members.session_epoch)
            except StartupError as refused:  # another process has the node id now
                if not self._displaced:
                    log.error("%s; this broker serves nothing until that one stops",
                              refused)
                self._displaced = True
                return
            self._displaced = False
        else:
            await members.refresh()
        await self._listen()
        await self.sync_topics()
        timeout = members.statement_timeout_s()
        await self.leases.read(timeout)
        changed = self._follow_leases()
        changed |= await self._acquire()
        changed |= await self._hand_over()
        if changed:
            self._fire()

    def _fire(self) -> None:
        for listener in self.listeners:
            try:
                listener()
            except Exception:
                log.exception("a leadership listener failed")

    def _follow_leases(self) -> bool:
        """Adopts what the database says this session owns; releases what it says is not."""
        changed = False
        for plog in self.logs():
            lease = self.leases.by_partition.get(plog.partition_id)
            if lease is None:
                continue
            if lease.held_by(self.node_id, self.session):
                if plog.status not in HELD or plog.leader_epoch != lease.epoch:
                    self._take(plog, lease.epoch)
                    changed = True
            elif plog.status in HELD:
                where = "nowhere" if lease.owner is None else f"node {lease.owner}"
                plog.release(f"its lease is held by {where} now (epoch {lease.epoch})")
                changed = True
        return changed

    def _take(self, plog: PostgresPartitionLog, epoch: int) -> None:
        plog.take(epoch)
        task = asyncio.get_running_loop().create_task(self._load(plog))
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    async def _load(self, plog: PostgresPartitionLog) -> None:
        async with self._load_limit:
            with contextlib.suppress(StorageError):  # it loads again when next used
                await plog.ready()

    def _release_all(self, reason: str) -> None:
        for plog in self.held():
            plog.release(reason)

    def live_ids(self) -> list[int]:
        return [b.node_id for b in self.members.live]

    async def _acquire(self) -> bool:
        live, sessions = self.live_ids(), self.members.sessions
        wanted = []
        for plog in self.logs():
            lease = self.leases.by_partition.get(plog.partition_id)
            if lease is None or lease.valid(sessions):
                continue
            if desired_owner(plog.partition_id, live, lease.assigned) == self.node_id:
                wanted.append(plog)
        if not wanted:
            return False
        taken = await self.leases.acquire([p.partition_id for p in wanted], self.session,
                                          self.members.statement_timeout_s())
        for plog in wanted:
            epoch = taken.get(plog.partition_id)
            if epoch is not None:
                self._take(plog, epoch)
        if taken:
            log.info("took %s over", plural(len(taken), "partition"))
            await self.leases.notify()
        return bool(taken)

    async def _hand_over(self) -> bool:
        live = self.live_ids()
        moves = []
        for plog in self.held():
            lease = self.leases.by_partition.get(plog.partition_id)
            if lease is None or plog.status is Status.MOVING:
                continue
            target = desired_owner(plog.partition_id, live, lease.assigned)
            if target is not None and target != self.node_id:
                moves.append((plog, target))
        return await self._move(moves)

    async def _hand_over_all(self, others: list[int]) -> bool:
        if not others:
            return False
        moves = []
        for plog in self.held():
            lease = self.leases.by_partition.get(plog.partition_id)
            order = succession(plog.partition_id, others,
                               None if lease is None else lease.assigned)
            moves.append((plog, order[0]))
        return await self._move(moves)

    async def _move(self, moves: Sequence[tuple[PostgresPartitionLog, int]]) -> bool:
        if not moves:
            return False
        for plog, _target in moves:
            plog.status = Status.MOVING
        await asyncio.gather(*(plog.drain() for plog, _ in moves), return_exceptions=True)
        try:
            moved = await self.leases.hand_over(
                [(p.partition_id, p.leader_epoch, t) for p, t in moves],
                self.members.session_epoch, self.members.statement_timeout_s())
        except StorageError:
            for plog, _ in moves:  # the outcome is unknown: read the lease again
                if plog.status is Status.MOVING:
                    plog.status = Status.STALE
            raise
        for plog, _target in moves:
            done = moved.get(plog.partition_id)
            if done is None:
                if plog.status is Status.MOVING:
                    plog.status = Status.STALE  # not moved (the target left): reload, go on
                continue
            epoch, owner = done
            plog.release(f"handed over to node {owner}")
            self.leases.set(plog.partition_id, Lease(
                owner, self.members.sessions.get(owner), epoch,
                self._assigned(plog.partition_id)))
        if moved:
            log.info("handed %s over", plural(len(moved), "partition"))
            await self.leases.notify()
        return bool(moved)

    def _assigned(self, pid: int) -> tuple[int, ...] | None:
        lease = self.leases.by_partition.get(pid)
        return None if lease is None else lease.assigned

    # -- topics ---------------------------------------------------------------------------

    async def sync_topics(self, force: bool = False) -> bool:
        """Re-reads the topics if their version moved; True if anything changed here."""
        async with self.topic_lock:
            with self.health.statement("read the topics"):
                version = await self.control_pool.fetchval(
                    "SELECT topics_version FROM strom_cluster",
                    timeout=self.members.statement_timeout_s())
                if version == self.topics_version and not force:
                    return False
                async with self.control_pool.acquire() as conn:
                    version, topics = await read_topics(conn)
            changed = self._apply_topics(topics)
            self.topics_version = version
        if changed:
            self._fire()
        return changed

    def _apply_topics(self, topics: dict[str, TopicRows]) -> bool:
        changed = False
        for name in list(self.registry.topics()):
            if name not in topics:
                for plog in self.registry.drop(name):
                    plog.release("its topic was deleted")
                    plog.closed = True
                log.info("topic %s was deleted by another broker", name)
                changed = True
        for name, rows in topics.items():
            current = self.registry.topics().get(name)
            if current is not None and current.topic_id != rows.info.topic_id:
                for plog in self.registry.drop(name):
                    plog.release("its topic was deleted")
                    plog.closed = True
                current = None
            if current is None:
                logs = [self.new_log(rows, i) for i in range(len(rows.partitions))]
                self.registry.register(rows.info, self.config.log_config(rows.info.configs),
                                       logs)
                changed = True
                continue
            logs = self.registry.logs[name]
            if len(rows.partitions) > len(logs) or current != rows.info:
                logs = logs + [self.new_log(rows, i)
                               for i in range(len(logs), len(rows.partitions))]
                self.registry.register(rows.info, self.config.log_config(rows.info.configs),
                                       logs)
                changed = True
        return changed

    def leadership_of(self, name: str, index: int) -> Leadership:
        plog = self.registry.partition(name, index)
        info = self.registry.topics().get(name)
        if info is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        return self.leadership(plog, info.replication_factor)
