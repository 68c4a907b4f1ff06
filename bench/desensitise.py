"""What desensitisation costs a request and what it catches: the edge's detectors against the three
regular expressions it had before (e-mail, card, phone), on the same prompts in one run.

    python -m bench.desensitise [--rounds 2000]

Prompts: short clean ones (no personal data), short ones carrying one identifier of each kind the
data policy names, and one of the edge's maximum length (2000 characters) mixing both. Reports
the median time per prompt of each, the ratio new/old, and how many of the labelled identifiers
each masks (no longer appears verbatim). Also the time to record a prompt in a profile store of
1000 users (desensitise, insert, trim to the history size, purge expired rows, one commit)
against one bare SQLite insert and commit on the same disk, alternated call by call.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from edge_node.serving.desensitise import desensitise
from edge_node.serving.profiles import ProfileStore

REPORT = Path(__file__).parent / "reports" / "desensitise.json"

OLD_PATTERNS: list[tuple[str, re.Pattern[str]]] = [  # edge_node/serving/desensitise.py before the data policy
    ("[email]", re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")),
    ("[card]", re.compile(r"\b\d(?:[ -]?\d){12,18}\b")),
    ("[phone]", re.compile(r"(?<!\w)\+?\d[\d ()-]{6,}\d\b")),
]

LABELLED = {  # identifier -> a prompt carrying it
    "jo.doe@example.co.uk": "mail me at jo.doe@example.co.uk about dinner",
    "root@localhost": "my login is root@localhost, reset it",
    "+44 20 7946 0958": "call +44 20 7946 0958 when the table is ready",
    "415.555.0100": "text 415.555.0100 if the ferry is late",
    "4111 1111 1111 1111": "pay with 4111 1111 1111 1111 please",
    "4111.1111.1111.1111": "card 4111.1111.1111.1111 for the deposit",
    "DE89 3704 0044 0532 0130 00": "refund to DE89 3704 0044 0532 0130 00 tomorrow",
    "192.168.10.42": "my router 192.168.10.42 drops the video call",
    "fe80::1ff:fe23:4567:890a": "the camera at fe80::1ff:fe23:4567:890a is offline",
    "123-45-6789": "my SSN is 123-45-6789 for the booking",
    "AB 12 34 56 C": "national insurance AB 12 34 56 C",
    "12345678Z": "DNI 12345678Z for the hotel",
}
CLEAN = ["Where can I eat seafood tonight?", "platform 4 at 10:30 for 2 people", "How do I get to the airport?",
         "a table on 2024-05-01 for 12.50 each", "quiet cafe open until 22:00 near the quay"]


def old_desensitise(text: str) -> str:
    for label, pattern in OLD_PATTERNS:
        text = pattern.sub(label, text)
    return text


def median_us(fn, prompts: list[str], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for prompt in prompts:
            fn(prompt)
        samples.append((time.perf_counter() - start) / len(prompts) * 1e6)
    return statistics.median(samples)


def record_ms(rounds: int) -> tuple[float, float]:
    """(profile store, one bare SQLite insert+commit) ms per recorded prompt, alternated so noise hits both."""
    with tempfile.TemporaryDirectory() as folder:
        store = ProfileStore(str(Path(folder) / "profiles.sqlite"))
        bare = sqlite3.connect(str(Path(folder) / "bare.sqlite"))
        bare.execute("CREATE TABLE prompts (user_id TEXT NOT NULL, prompt TEXT NOT NULL, at REAL NOT NULL)")
        for user in range(1000):
            store.update(f"ue-{user}", ["vegetarian"], merge=False)
            for n in range(10):
                store.record_prompt(f"ue-{user}", f"question {n}")
        spent = [0.0, 0.0]
        for n in range(rounds):
            prompt = f"call 415.555.01{n % 100:02d} about seat {n}"
            start = time.perf_counter()
            store.record_prompt(f"ue-{n % 1000}", prompt)
            spent[0] += time.perf_counter() - start
            start = time.perf_counter()
            with bare:
                bare.execute("INSERT INTO prompts VALUES (?, ?, ?)", (f"ue-{n % 1000}", prompt, time.time()))
            spent[1] += time.perf_counter() - start
        bare.close()
        return spent[0] / rounds * 1e3, spent[1] / rounds * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    pii = list(LABELLED.values())
    long_prompt = (" ".join(CLEAN + pii) + " ") * 8
    long_prompt = long_prompt[:2000]
    sets = {"clean": CLEAN, "pii": pii, "max_length": [long_prompt]}
    timings = {}
    for name, prompts in sets.items():
        old = median_us(old_desensitise, prompts, args.rounds)
        new = median_us(lambda text: desensitise(text).text, prompts, args.rounds)
        timings[name] = {"old_us": round(old, 2), "new_us": round(new, 2), "ratio_new_over_old": round(new / old, 2)}
    caught_old = sorted(v for v, p in LABELLED.items() if v in p and v not in old_desensitise(p))
    caught_new = sorted(v for v, p in LABELLED.items() if v not in desensitise(p).text)
    clean_changed = [p for p in CLEAN if desensitise(p).text != p]
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(),
        "per_prompt": timings,
        "identifiers": len(LABELLED), "masked_old": len(caught_old), "masked_new": len(caught_new),
        "missed_old": sorted(set(LABELLED) - set(caught_old)), "missed_new": sorted(set(LABELLED) - set(caught_new)),
        "clean_prompts_changed_new": clean_changed,
    }
    store_ms, bare_ms = record_ms(min(args.rounds, 300))
    report["record_prompt_ms"] = {"profile_store": round(store_ms, 3), "bare_sqlite_commit": round(bare_ms, 3),
                                  "ratio": round(store_ms / bare_ms, 2)}
    print(f"{'prompts':<12}{'old µs':>10}{'new µs':>10}{'new/old':>10}")
    for name, row in timings.items():
        print(f"{name:<12}{row['old_us']:>10}{row['new_us']:>10}{row['ratio_new_over_old']:>10}")
    print(f"identifiers masked: old {len(caught_old)}/{len(LABELLED)}, new {len(caught_new)}/{len(LABELLED)}; "
          f"clean prompts changed by new: {len(clean_changed)}")
    print(f"record a prompt in a 1000-user profile store: {store_ms:.2f} ms; one bare SQLite insert+commit: "
          f"{bare_ms:.2f} ms (x{store_ms / bare_ms:.2f})")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
