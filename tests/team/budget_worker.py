"""One worker process of the team budget tests: `python budget_worker.py '<json config>'`.

Its budgets and cost caps come from the environment the test gives it (GENWIDGETS_BUDGETS_BACKEND,
GENWIDGETS_MAX_PAID_TASKS, ...), as a real worker's would. Modes:

- ``run``: submit `tasks` OneRouter tasks at once and wait for them all;
- ``gets``: submit one task, then ask for its status `tasks` times in a row;
- ``hold``: submit `tasks` slow tasks, print ``HELD`` and sleep (the test kills it);
- ``paid``: submit `tasks` one after another, counting the ones the cost guard refuses.

It starts at `start_at` (a `time.time()`), so workers started one after another overlap. The last
stdout line is JSON: statuses, refusals, and the budget's state.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from genwidgets import AsyncClient, SpendCapExceeded


async def main(config: dict[str, Any]) -> dict[str, Any]:
    async with AsyncClient(
        api_keys={"onerouter": config["key"]},
        base_urls={"onerouter": config["base"]},
        journal=False,
        cache_dir=config["cache"],
        poll_interval=(0.05, 0.3),
        budgets={"onerouter": tuple(config["budget"])},
    ) as client:
        await asyncio.sleep(max(0.0, config.get("start_at", 0) - time.time()))
        mode, n, tag = config["mode"], config["tasks"], config.get("tag", "w")
        model = "onerouter:flux-schnell"
        statuses: Counter[str] = Counter()
        refused = 0
        if mode == "gets":  # a status loop: every request counts, none is a widened poll
            task = await client.submit(model, prompt=f"{tag} watched [slow]")
            for _ in range(n):
                task = await client.get(task)
            statuses[task.status.value] += 1
        elif mode == "paid":
            for i in range(n):
                try:
                    task = await client.submit(model, prompt=f"{tag} paid {i}")
                except SpendCapExceeded:
                    refused += 1
                    continue
                statuses[(await client.wait(task)).status.value] += 1
        else:
            slow = " [slow]" if mode == "hold" else ""
            tasks = await asyncio.gather(
                *(client.submit(model, prompt=f"{tag} {i}{slow}") for i in range(n))
            )
            if mode == "hold":
                print("HELD", json.dumps(client.budget("onerouter").state()), flush=True)
                await asyncio.sleep(3600)
            for task in await asyncio.gather(*(client.wait(t) for t in tasks)):
                statuses[task.status.value] += 1
        budget = client.budget("onerouter")
        return {
            "statuses": dict(statuses),
            "refused": refused,
            "budget": budget.state() if budget is not None else None,
            "guard": {"paid_tasks": client.cost_guard.paid_tasks},
        }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
