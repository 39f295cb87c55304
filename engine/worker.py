"""One agent's state machine (architecture decisions 4-5): the driver task that owns every
transition of the agent (start, pause, hibernate, wake, turns, crashes, manual commands), so
none of them race, and the `Inbox` it wakes from: a subscription to the Axon from the agent's
durable cursor, filtered to what the agent wakes on. Every (re)start opens a fresh inbox from
the cursor, which is how delivery stays at-least-once. `Supervisor` (engine/supervisor.py)
owns the workers of a home.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from engine.broker import BrokerHooks, NativeBroker, ProtocolError
from engine.broker.permissions import CONTROL_EVENT_TYPES
from engine.errors import AxonError, ErrorCode
from engine.models import AgentSpec, AgentState, AgentView, Draft, Event, TurnOutcome
from engine.runtime import AgentKey, Runtime

if TYPE_CHECKING:
    from engine.broker.acp import AcpBroker
    from engine.engine import Engine
    from engine.supervisor import Supervisor

LOG_FLUSH_S = 0.5
LOG_LINES_PER_FLUSH = 50
STDERR_TAIL = 20
MAX_BACKOFF_S = 60.0
CANCEL_GRACE_S = 5.0  # a cancelled ACP turn must end within this, or the agent is restarted


class Inbox:
    """The events an agent wakes on, after its cursor, in sequence order."""

    def __init__(self, engine: Engine, axon_id: str, spec: AgentSpec, after: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.arrived = asyncio.Event()
        self.last_sequence = 0  # of the newest event queued
        self._task = asyncio.create_task(self._pump(engine, axon_id, spec, after))

    async def _pump(self, engine: Engine, axon_id: str, spec: AgentSpec, after: int) -> None:
        wake_on = set(spec.wake_on) - {"SYSTEM_EVENT"}
        # an ACP agent's permission decisions reach its broker, never a prompt
        control = CONTROL_EVENT_TYPES if spec.protocol == "acp" else frozenset()
        async for e in engine.subscribe(axon_id, after):
            if e.origin in wake_on and e.source != spec.name and e.event_type not in control:
                self.queue.put_nowait(e)
                self.last_sequence = e.sequence
                self.arrived.set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class AgentWorker:
    """One agent: its driver task, its runtime handle and its broker."""

    def __init__(
        self,
        supervisor: Supervisor,
        axon_id: str,
        spec: AgentSpec,
        runtime: Runtime,
        desired: str,
        *,
        remote: bool = False,
    ) -> None:
        self.sup = supervisor
        self.engine = supervisor.engine
        self.axon_id = axon_id
        self.spec = spec
        self.runtime = runtime
        self.key = AgentKey(supervisor.home_id, axon_id, spec.name)
        self.desired = desired
        self.remote = remote  # declared over TCP: Docker only, ever
        self.state = "stopped"
        self.detail: dict[str, Any] = {}
        self.broker: NativeBroker | AcpBroker | None = None
        self._serving: asyncio.Task[None] | None = None
        self._inbox: Inbox | None = None
        self._next: asyncio.Task[Event] | None = None
        self._control: asyncio.Queue[str] = asyncio.Queue()
        self._turn_done = asyncio.Event()
        self._turn_error: str | None = None
        self._turn_details: dict[str, Any] = {}
        self._human_wait = asyncio.Event()  # an ACP permission request started or ended
        self._in_turn = False
        self._idle_requested = False
        self._expect_exit = False
        self._needs_attach = False
        self._since = time.monotonic()  # when the current state began (idle clocks)
        self._failures = 0
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)
        self._log_lines: list[str] = []
        self._log_dropped = 0
        self._log_flush: asyncio.Task[None] | None = None
        self._driver: asyncio.Task[None] | None = None

    # -- public -------------------------------------------------------------------------

    def start(self) -> None:
        if self._driver is None or self._driver.done():
            self._driver = asyncio.create_task(self._drive(), name=f"agent {self.spec.name}")

    def command(self, action: str) -> None:
        self._control.put_nowait(action)

    @property
    def acp(self) -> AcpBroker | None:
        """The broker, when it speaks ACP (permission requests, cancel, session)."""
        return self.broker if self.spec.protocol == "acp" else None  # type: ignore[return-value]

    def view(self, cursor: int) -> AgentView:
        return AgentView(
            axon_id=self.axon_id,
            name=self.spec.name,
            state=self.state,
            runtime=self.runtime.kind,
            cursor=cursor,
            spec=self.spec,
            detail={**self.detail, "declared_over": "tcp" if self.remote else "socket"},
        )

    async def detach(self) -> None:
        """The engine is stopping: leave the agent as it is (a restart re-attaches)."""
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._driver
        await self._close_channel()
        await self._close_inbox()
        if self._log_flush is not None:
            self._log_flush.cancel()

    # -- the driver ---------------------------------------------------------------------

    async def _drive(self) -> None:
        try:
            await self._boot()
        except AxonError as e:
            await self._recover(f"could not start: {e.message}")
        try:
            while True:
                if self.state == "stopped":
                    if await self._control.get() in ("start", "resume"):
                        await self._guarded("start", self._launch("start"))
                    continue
                action, event = await self._next_thing()
                await self._guarded(action, self._act(action, event))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug, not a runtime failure: say so rather than vanish
            self.state = "failed"
            self.detail["error"] = str(e)
            await self._system("agent.failed", {"error": str(e), "restart": False})

    async def _guarded(self, action: str, step: Coroutine[Any, Any, None]) -> None:
        """Run a transition; when the runtime refuses it, treat the agent as failed and
        restart it (with backoff) rather than leave it in a state nobody can see."""
        try:
            await step
        except AxonError as e:
            await self._recover(f"{action} failed: {e.message}")

    async def _act(self, action: str, event: Event | None) -> None:
        if action == "stop":
            await self._stop()
        elif action == "exit":
            await self._recover()
        elif action == "idle":
            await self._idle_step()
        elif action == "suspend" and self.state == "running":
            await self._pause("agent asked (axon/idle)")
        elif action in ("pause", "resume", "start"):
            await self._manual(action)
        elif event is not None:
            preface = []
            if self.state != "running":
                resumed = await self._wake(event)
                if resumed is None:
                    return  # restarted: a fresh inbox delivers from the cursor
                preface.append(resumed)
            outcome = await self._turn(event, preface)
            if outcome == "exit":
                await self._recover()
            elif outcome == "stop":
                await self._stop()

    async def _next_thing(self) -> tuple[str, Event | None]:
        """Wait for a command, an event, the agent's exit, or an idle deadline."""
        if self._next is None and self._inbox is not None:
            self._next = asyncio.create_task(self._inbox.queue.get())
        control = asyncio.create_task(self._control.get())
        waiters: set[asyncio.Future[Any]] = {control}
        if self._next is not None:
            waiters.add(self._next)
        if self._serving is not None and self.state in ("running", "paused"):
            waiters.add(self._serving)  # a paused agent can die too (docker kill, rm -f)
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=self._idle_deadline(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not control.done():
                control.cancel()
        if control in done:
            return control.result(), None
        if self._serving is not None and self._serving in done:
            return "exit", None
        if self._next is not None and self._next in done:
            event = self._next.result()
            self._next = None
            return "event", event
        return "idle", None

    def _idle_deadline(self) -> float | None:
        elapsed = time.monotonic() - self._since
        if self.state == "running":
            return max(0.0, self.spec.idle_pause_s - elapsed)
        if self.state == "paused":
            return max(0.0, self.spec.idle_hibernate_s - elapsed)
        return None

    def _enter(self, state: AgentState) -> None:
        self.state = state
        self._since = time.monotonic()

    # -- transitions --------------------------------------------------------------------

    async def _boot(self) -> None:
        """Pick up where a previous engine left the agent (contract §5: reconcile by labels)."""
        if self.desired == "stopped":
            self._enter("stopped")
            return
        status = await self.runtime.status(self.key)
        fresh = self.spec.protocol == "acp" or bool(self.spec.gateways)
        if fresh and status.state in ("running", "paused"):
            # An ACP connection cannot be picked up midway: its pending requests lived in
            # the previous engine. Start it afresh; its session comes back (session/load).
            # A gateway token lived in the previous engine too: a new start gets a new one.
            await self.runtime.stop(self.key)
            status = await self.runtime.status(self.key)
        if status.state == "running" and self.runtime.kind == "docker":
            await self._open_channel(await self.runtime.attach(self.key))
            await self._initialize()
            self._enter("running")
            await self._system("agent.running", {"reattached": True})
        elif status.state == "paused":
            self._needs_attach = True
            self._enter("paused")
            await self._open_inbox()
        elif status.state == "exited":
            self._enter("hibernated")
            await self._open_inbox()
        else:
            await self._launch("start")

    async def _launch(self, reason: str) -> None:
        """Create (if needed), start, attach and initialise; then deliver from the cursor."""
        self._enter("starting")
        await self._system("agent.starting", {"reason": reason, "runtime": self.runtime.kind})
        await self._create()
        await self._open_channel(await self.runtime.start(self.key))
        await self._initialize()
        self._enter("running")
        await self._system("agent.running", {})

    async def _create(self) -> None:
        """Make the sandbox with its env and, when it uses the gateway, a fresh token."""
        env = self.sup.environment(self.spec, remote=self.remote)
        admission = await self.sup.admit(self.key, self.spec, self.runtime)
        if admission is None:
            await self.runtime.create(self.key, self.spec, env)
        else:
            env = {**env, **admission.env}
            await self.runtime.create(self.key, self.spec, env, admission.mount)

    async def _initialize(self) -> None:
        assert self.broker is not None
        cursor = await self.engine.agent_cursor(self.axon_id, self.spec.name)
        try:
            await self.broker.initialize(cursor)
        except (ProtocolError, TimeoutError) as e:
            raise AxonError(
                f"agent {self.spec.name} did not answer initialize: {e}",
                code=ErrorCode.AGENT_INIT_FAILED,
            ) from None
        self._needs_attach = False
        await self._open_inbox(cursor)

    async def _open_channel(self, io: Any) -> None:
        await self._close_channel()
        hooks = BrokerHooks(
            on_idle=self._on_idle, on_turn_done=self._on_turn_done, on_log=self._on_log
        )
        if self.spec.protocol == "acp":
            from engine.broker.acp import AcpBroker  # the SDK, only where ACP agents run

            self.broker = AcpBroker(
                self.engine,
                self.axon_id,
                self.spec,
                io,
                hooks,
                cwd=self.runtime.workdir(self.spec),
                on_human_wait=self._human_wait.set,
                mcp_gateway=self.sup.mcp.entry(self.key, self.spec),
            )
        else:
            self.broker = NativeBroker(self.engine, self.axon_id, self.spec.name, io, hooks)
        self._expect_exit = False
        self._serving = asyncio.create_task(self.broker.serve())

    async def _close_channel(self) -> None:
        if self._serving is not None:
            self._serving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._serving
            self._serving = None
        if self.broker is not None:
            await self.broker.io.close()
            self.broker = None

    async def _open_inbox(self, after: int | None = None) -> None:
        await self._close_inbox()
        if after is None:
            after = await self.engine.agent_cursor(self.axon_id, self.spec.name)
        self._inbox = Inbox(self.engine, self.axon_id, self.spec, after)

    async def _close_inbox(self) -> None:
        if self._next is not None:
            self._next.cancel()
            self._next = None
        if self._inbox is not None:
            await self._inbox.close()
            self._inbox = None

    async def _wake(self, trigger: Event) -> Draft | None:
        """Resume for `trigger`. Returns `agent.resumed` for the caller to commit with the
        turn that delivers `trigger`; None when the agent was (re)started, so the event comes
        again from the fresh inbox (agent.resumed is then committed here)."""
        began = time.monotonic()
        was = self.state
        restarted = False
        if self.state == "paused":
            await self._resume_runtime()
            if self._needs_attach:
                await self._open_channel(await self.runtime.attach(self.key))
                await self._initialize()
                restarted = True
        else:  # hibernated, failed: start it again
            await self._create()
            await self._open_channel(await self.runtime.start(self.key))
            await self._initialize()
            restarted = True
        self._enter("running")
        resumed = self._draft(
            "agent.resumed",
            {
                "trigger_sequence": trigger.sequence,
                "wake_ms": round((time.monotonic() - began) * 1000, 2),
                "from": "paused" if was == "paused" else "hibernated",
            },
        )
        if restarted:  # the trigger comes again from the fresh inbox
            await self._publish([resumed])
            return None
        return resumed

    async def _resume_runtime(self) -> None:
        try:
            await self.runtime.resume(self.key)
        except AxonError:
            if (await self.runtime.status(self.key)).state != "running":
                raise

    async def _turn(self, first: Event, preface: list[Draft] | None = None) -> TurnOutcome:
        """Deliver one event (or, with on_busy=merge, every waiting one) and wait for
        turn/done; how the turn ended."""
        assert self.broker is not None and self._inbox is not None
        events = [first]
        if self.spec.on_busy == "merge":
            while not self._inbox.queue.empty():
                events.append(self._inbox.queue.get_nowait())
        sequences = [e.sequence for e in events]
        self._turn_done.clear()
        self._turn_error = None
        self._turn_details = {}
        self._in_turn = True
        began = time.monotonic()
        started = self._draft("turn.started", {"sequences": sequences})
        if self.acp is not None and not preface:
            # in wire order with the turn's updates, sharing the first one's commit
            self.acp.record(started)
        else:
            # agent.resumed (when waking) and turn.started share one commit, before delivery
            await self._publish([*(preface or []), started])
        outcome: TurnOutcome = "done"
        try:
            await self.broker.deliver(events)
            outcome = await self._await_turn()
        except (ConnectionError, OSError):
            outcome = "exit"
        finally:
            self._in_turn = False
        reason: str = outcome
        if outcome == "done" and self._turn_error is not None:
            outcome, reason = "failed", f"the agent reported: {self._turn_error}"
        took = round((time.monotonic() - began) * 1000, 2)
        details = self._turn_details
        if outcome == "done":
            self._failures = 0  # it works again: the next crash restarts at the first backoff
            await self._system(
                "turn.completed", {"sequences": sequences, "duration_ms": took, **details}
            )
        else:
            await self._system(
                "turn.failed",
                {"sequences": sequences, "reason": reason, "duration_ms": took, **details},
            )
        if outcome == "timeout" and not self._turn_done.is_set() and self.spec.protocol == "acp":
            outcome = "exit"  # it ignored the cancel: restart it rather than prompt it again
        self._since = time.monotonic()
        if outcome == "done" and self._idle_requested:
            self._idle_requested = False
            await self._pause("agent asked (axon/idle)")
        return outcome

    async def _await_turn(self) -> TurnOutcome:
        """Until turn/done, the agent's exit, the turn timeout, or a stop command. Other
        commands wait for the end of the turn; with on_busy=interrupt, an event arriving
        mid-turn is announced to the agent (`axon/interrupt`, or ACP's `session/cancel`).
        While an ACP agent waits for a human's permission it is paused, and the turn clock
        stops; at the timeout an ACP turn is cancelled and gets a grace period to end."""
        assert self._inbox is not None and self._serving is not None
        deadline: float | None = time.monotonic() + self.spec.turn_timeout_s
        interrupted = False
        cancelled = False
        deferred: list[str] = []
        done_wait = asyncio.create_task(self._turn_done.wait())
        control = asyncio.create_task(self._control.get())
        human = asyncio.create_task(self._human_wait.wait())
        try:
            while True:
                waiters: set[asyncio.Future[Any]] = {done_wait, self._serving, control, human}
                arrival = None
                if self.spec.on_busy == "interrupt" and not interrupted:
                    if self._inbox.queue.empty():
                        self._inbox.arrived.clear()
                    arrival = asyncio.create_task(self._inbox.arrived.wait())
                    waiters.add(arrival)
                began = time.monotonic()
                done, _ = await asyncio.wait(
                    waiters,
                    timeout=None if deadline is None else max(0.0, deadline - began),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if arrival is not None and not arrival.done():
                    arrival.cancel()
                if done_wait in done:
                    return "timeout" if cancelled else "done"
                if self._serving in done:
                    return "exit"
                if control in done:
                    if control.result() == "stop":
                        return "stop"
                    deferred.append(control.result())
                    control = asyncio.create_task(self._control.get())
                    continue
                if human in done:
                    self._human_wait.clear()
                    human = asyncio.create_task(self._human_wait.wait())
                    deadline = await self._follow_human_wait(deadline)
                    continue
                if arrival is not None and arrival in done and self.broker is not None:
                    interrupted = True
                    await self.broker.interrupt(self._inbox.last_sequence)
                    continue
                if not done:
                    if cancelled or self.acp is None:
                        return "timeout"
                    cancelled = True
                    await self.acp.cancel_turn("turn timeout")
                    deadline = time.monotonic() + CANCEL_GRACE_S
        finally:
            done_wait.cancel()
            control.cancel()
            human.cancel()
            for action in deferred:
                self._control.put_nowait(action)

    async def _follow_human_wait(self, deadline: float | None) -> float | None:
        """Pause the agent while a permission request waits for a human; when the last one
        is answered, resume it, with agent.resumed ahead of anything the answer causes.
        Returns the turn's new deadline (none while paused)."""
        broker = self.acp
        if broker is None:
            return deadline
        if broker.awaiting_human:
            if self.state == "running":
                first = min(broker.pending)
                self.detail["waiting_for"] = f"permission #{first}"
                broker.hold()
                await self._pause(f"waiting for a decision on permission #{first}")
                return None
            return deadline
        if self.state != "paused":
            broker.release()
            return deadline
        # agent.resumed's place in the log comes before anything the answer causes; the
        # answer itself waits in the paused agent's stdin, so it reads it as it thaws.
        slot = broker.reserve()
        broker.release()
        self.detail.pop("waiting_for", None)
        woke = time.monotonic()
        try:
            await self._resume_runtime()
        except BaseException:
            slot.set_result(None)
            raise
        self._enter("running")
        slot.set_result(
            self._draft(
                "agent.resumed",
                {
                    "trigger_sequence": broker.last_decision,
                    "from": "paused",
                    "wake_ms": round((time.monotonic() - woke) * 1000, 2),
                },
            )
        )
        self.detail["last_event"] = "agent.resumed"
        return time.monotonic() + self.spec.turn_timeout_s

    async def _pause(self, reason: str) -> None:
        try:
            await self.runtime.pause(self.key)
        except AxonError:
            # Docker settles its paused flag after the call returns; what counts is the end
            if (await self.runtime.status(self.key)).state != "paused":
                raise
        idle_s = round(time.monotonic() - self._since, 3)
        self._enter("paused")
        await self._system("agent.paused", {"reason": reason, "idle_s": idle_s})

    async def _idle_step(self) -> None:
        if self.state == "running":
            await self._pause("idle")
        elif self.state == "paused":
            paused_s = round(time.monotonic() - self._since, 3)
            self._expect_exit = True
            await self.runtime.stop(self.key)
            await self.sup.revoke(self.key)
            await self._close_channel()
            self._enter("hibernated")
            await self._system("agent.hibernated", {"paused_s": paused_s})

    async def _manual(self, action: str) -> None:
        if action == "pause" and self.state == "running":
            await self._pause("requested")
        elif action in ("resume", "start") and self.state == "paused":
            began = time.monotonic()
            await self._resume_runtime()
            if self._needs_attach:
                await self._open_channel(await self.runtime.attach(self.key))
                await self._initialize()
            self._enter("running")
            await self._system(
                "agent.resumed",
                {
                    "trigger_sequence": None,
                    "from": "paused",
                    "wake_ms": round((time.monotonic() - began) * 1000, 2),
                },
            )
        elif action in ("resume", "start") and self.state in ("hibernated", "failed"):
            await self._launch(action)

    async def _stop(self) -> None:
        self._expect_exit = True
        if self.acp is not None:
            await self.acp.cancel_pending("the agent was stopped")
            self.acp.release()
        with contextlib.suppress(AxonError):  # already gone is stopped too
            await self.runtime.stop(self.key)
        await self.sup.revoke(self.key)
        await self._close_channel()
        await self._close_inbox()
        self._enter("stopped")
        await self._system("agent.stopped", {})

    async def _recover(self, error: str | None = None) -> None:
        """The agent exited on its own (or a transition failed): say so, wait, start it
        again; keep trying with backoff until it runs or someone stops it."""
        if self._expect_exit and error is None:
            return
        await self.sup.revoke(self.key)  # the next start gets a new token
        await self._close_channel()
        while True:
            try:
                status = await self.runtime.status(self.key)
            except AxonError as e:
                status, error = None, error or e.message
            self._failures += 1
            backoff = min(MAX_BACKOFF_S, 2.0 ** (self._failures - 1))
            self._enter("failed")
            self.detail["exit_code"] = status.exit_code if status else None
            body: dict[str, Any] = {
                "exit_code": self.detail["exit_code"],
                "stderr": list(self._stderr),
                "restart_in_s": backoff,
            }
            if error:
                body["error"] = error
            await self._system("agent.failed", body)
            try:
                action = await asyncio.wait_for(self._control.get(), backoff)
            except TimeoutError:
                action = "restart"
            if action == "stop":
                await self._stop()
                return
            try:
                await self._launch("restart after failure")
                return
            except AxonError as e:
                error = e.message

    # -- broker hooks -------------------------------------------------------------------

    def _on_idle(self) -> None:
        if self._in_turn:
            self._idle_requested = True  # pause as soon as the turn is done
        else:
            self._control.put_nowait("suspend")

    def _on_turn_done(self, error: str | None, details: dict[str, Any]) -> None:
        if self._in_turn:
            self._turn_error = error
            self._turn_details = details
            self._turn_done.set()

    def log(self, line: str) -> None:
        """A line for the agent's log from elsewhere in the engine (its MCP upstreams)."""
        self._on_log(line)

    def _on_log(self, line: str) -> None:
        self._stderr.append(line)
        if len(self._log_lines) < LOG_LINES_PER_FLUSH:
            self._log_lines.append(line)
        else:
            self._log_dropped += 1
        if self._log_flush is None or self._log_flush.done():
            self._log_flush = asyncio.create_task(self._flush_logs())

    async def _flush_logs(self) -> None:
        await asyncio.sleep(LOG_FLUSH_S)
        lines, dropped = self._log_lines, self._log_dropped
        self._log_lines, self._log_dropped = [], 0
        body: dict[str, Any] = {"lines": lines}
        if dropped:
            body["dropped"] = dropped
        await self._system("agent.log", body)

    def _draft(self, event_type: str, body: dict[str, Any]) -> Draft:
        return Draft(
            event_type, orjson.dumps(body).decode(), self.spec.name, "SYSTEM_EVENT", author="axons"
        )

    async def _publish(self, drafts: list[Draft]) -> None:
        self.detail["last_event"] = drafts[-1].event_type
        with contextlib.suppress(AxonError):  # a deleted Axon or a closing engine
            await self.engine.publish_batch(self.axon_id, drafts, system=True)

    async def _system(self, event_type: str, body: dict[str, Any]) -> None:
        await self._publish([self._draft(event_type, body)])
