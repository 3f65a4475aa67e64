"""Calls handed from a worker thread to an event loop run there, in order, all of them,
with one wake-up of the loop per burst."""
import asyncio
import threading

from cardgate.gateway.api.loop_handoff import LoopHandoff


def test_a_burst_of_calls_from_another_thread_wakes_the_loop_once_and_runs_in_order():
    async def scenario():
        loop = asyncio.get_running_loop()
        handoff = LoopHandoff(loop)
        seen, wakeups = [], []
        real = loop.call_soon_threadsafe

        def counting(*args):
            wakeups.append(1)
            return real(*args)
        loop.call_soon_threadsafe = counting

        def record(i, finished):
            seen.append((i, threading.get_ident()))
            if finished is not None:
                finished.set_result(None)

        burst_done, later_done = loop.create_future(), loop.create_future()
        worker = threading.Thread(target=lambda: [
            handoff.call(record, i, burst_done if i == 999 else None) for i in range(1000)])
        worker.start()
        worker.join()                 # the loop is busy here: the whole burst is queued
        await asyncio.wait_for(burst_done, 10)
        after_burst = len(wakeups)
        threading.Thread(target=handoff.call, args=(record, 1000, later_done)).start()
        await asyncio.wait_for(later_done, 10)
        return seen, after_burst, len(wakeups), threading.get_ident()

    seen, after_burst, total, loop_thread = asyncio.run(scenario())
    assert [i for i, _ in seen] == list(range(1001))
    assert {t for _, t in seen} == {loop_thread}
    assert (after_burst, total) == (1, 2)      # one wake-up for the burst, one for the next


def test_a_failing_call_does_not_strand_the_ones_after_it():
    async def scenario():
        loop = asyncio.get_running_loop()
        handoff, seen, done = LoopHandoff(loop), [], loop.create_future()

        def fail():
            raise RuntimeError("a bug in one caller's hand-off")
        worker = threading.Thread(target=lambda: [
            handoff.call(seen.append, 1), handoff.call(fail), handoff.call(seen.append, 2),
            handoff.call(done.set_result, None)])
        worker.start()
        worker.join()
        await asyncio.wait_for(done, 10)
        return seen

    assert asyncio.run(scenario()) == [1, 2]
