"""A writer process for the registry concurrency test: N random promote / rollback /
register operations on one registry, as the TUI, cron and a training pipeline would do.
Prints one JSON line with what succeeded and what was refused."""

from __future__ import annotations

import json
import random
import sys

from modeldeck.core.errors import ConflictError, RegistryError
from modeldeck.core.registry import Registry


def main(path: str, seed: int, n: int) -> None:
    rnd = random.Random(seed)
    done = {"register": 0, "promote": 0, "rollback": 0, "conflict": 0, "refused": 0, "unexpected": []}
    moves = []
    with Registry(path) as reg:
        for _ in range(n):
            op = rnd.choice(["register", "promote", "promote", "rollback"])
            env = rnd.choice(["production", "staging"])
            try:
                if op == "register":
                    v = reg.register("churn", f"s3://bucket/churn/{seed}-{rnd.random()}",
                                     metrics={"auc": rnd.random()}, actor=f"worker{seed}")
                    reg.approve("churn", v.version, "auto", actor=f"worker{seed}")
                    done["register"] += 1
                    continue
                current = reg.alias("churn", env)
                if op == "promote":
                    latest = reg.model("churn").latest_version or 1
                    target = rnd.randint(1, latest)
                    if target == current:
                        continue
                    c = reg.promote("churn", target, env, "load test", expect=current, actor=f"worker{seed}")
                else:
                    c = reg.rollback("churn", env, "load test", expect=current, actor=f"worker{seed}")
                done[op] += 1
                moves.append([c.environment, c.from_version, c.to_version])
            except ConflictError:
                done["conflict"] += 1
            except RegistryError as e:
                # Refusals that are the rules working: nothing to roll back, version is current,
                # a version another worker registered but has not approved yet.
                if any(s in str(e) for s in ("roll back", "already holds", "nothing in", "not approved")):
                    done["refused"] += 1
                else:
                    done["unexpected"].append(str(e))
            except Exception as e:  # "database is locked" would land here
                done["unexpected"].append(f"{type(e).__name__}: {e}")
    done["moves"] = moves
    print(json.dumps(done))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
