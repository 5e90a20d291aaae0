"""Micro-batching: the jobs that concurrent requests submit, answered by one call for all those waiting."""

import asyncio
from typing import Any, Callable


class Batcher:
    """Runs `process` once for all the jobs waiting, rather than once per request.

    While one call runs (in a thread, so the server keeps accepting requests), new jobs queue; the next call takes
    all of them, up to `max_size` (counted by `size`). A batch costs far less than its jobs one by one: a model call,
    or a write and an fsync. `process` returns one result a job; if it raises, every job of the batch fails with it.
    """

    def __init__(self, process: Callable[[list], list], max_size: int, size: Callable[[Any], int] = lambda job: 1):
        self.process, self.max_size, self.size = process, max_size, size
        self.queue: asyncio.Queue = asyncio.Queue()

    async def submit(self, job: Any) -> Any:
        """`job`'s result, from a call with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((job, future))
        return await future

    async def run(self) -> None:
        """Forever: wait for a job, take every other one already waiting, and answer them with one call."""
        while True:
            batch = [await self.queue.get()]
            size = self.size(batch[0][0])
            while size < self.max_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                size += self.size(batch[-1][0])
            try:
                results = await asyncio.to_thread(self.process, [job for job, _ in batch])
            except Exception as error:  # the callers' requests fail with it; the batcher goes on
                results, failure = [None] * len(batch), error
            else:
                failure = None
            for (_, future), result in zip(batch, results):
                if not future.done():  # its client may have gone
                    future.set_exception(failure) if failure else future.set_result(result)
