"""Speed of imported-transcript analytics (``speechqa run --transcripts``) on one core.

    .venv/bin/python bench/bench_import.py [--calls 2000] [--turns 20] [--seed 7]

Generates N synthetic chat calls (varied Chinese agent and customer text: greetings, staff
numbers, order numbers, amounts, dates, phone numbers to mask, complaints, brush-offs,
closings), writes them as one CSV with metadata columns, and runs the real import into a
temporary OUT with sampling and the history store on a temporary SQLite file. Prints
``import_calls_per_s``, the stage breakdown from run.json, and ratios measured in the same
process: the whole run against just reading the CSV (pandas ``read_csv``) and against
speechqa's own reader. Ratios, not asserted timings: the target is 200 calls/s.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechqa.config import load_settings  # noqa: E402
from speechqa.pipeline import make_context, run_transcripts  # noqa: E402
from speechqa.transcripts import read_transcripts  # noqa: E402

SHOPS = ["优品旗舰店", "顺达快递", "青禾生鲜", "万家电器", "星河数码"]
GREETINGS = [
    "您好，欢迎光临{shop}，客服{n}号为您服务，请问有什么可以帮您？",
    "亲，您好，这里是{shop}客服，工号{n}，很高兴为您服务。",
    "您好，我是{shop}的客服小{name}，请问有什么需要帮助的？",
]
CUSTOMER = [
    "我的订单{order}怎么还没发货？",
    "我买的{item}收到有点问题，能换吗？",
    "这个{item}现在{price}元吗？",
    "快递显示已签收，我去驿站看一下。",
    "我手机号是{mobile}，你查一下。",
    "能不能开发票？抬头是公司。",
    "好的，谢谢。",
    "嗯。",
    "那什么时候能到？",
    "我{month}月{day}号下的单，到现在还没有物流信息。",
    "优惠券用不了是怎么回事？",
    "行吧，那就这样。",
    "可以换货吗？尺码小了。",
    "退款什么时候到账？",
    "好的，我知道了。",
    "麻烦帮我改一下收货地址。",
    "颜色有别的吗？",
    "对，就是这个订单。",
]
UNHAPPY = [
    "太慢了，我要投诉你们！",
    "再不处理我就打12315了。",
    "我要找你们领导。",
    "你们客服态度也太差了。",
    "东西坏了，我要退款，不然就曝光你们。",
]
AGENT = [
    "好的，请稍等，我帮您查询一下订单{order}。",
    "非常抱歉给您带来不便，我马上帮您处理。",
    "您的包裹已经在派送中，预计{month}月{day}号送达。",
    "退款{price}元已经提交，一般三到五个工作日到账。",
    "请您提供一下下单的手机号，我核实一下。",
    "理解您的心情，这边给您申请补发。",
    "可以的，发票会在发货后开具。",
    "这个优惠券需要满{price}元才能使用哦。",
    "已经为您登记，{n}小时内会有专人联系您。",
    "亲，换货需要先申请售后，我来教您操作。",
    "地址已经帮您修改好了。",
    "这款还有黑色和白色两种。",
    "好的，还有什么可以帮您的吗？",
]
BRUSH_OFF = ["不知道，你自己去查吧。", "这个不归我管。", "我也没办法。"]
CLOSING = "感谢您的耐心等待，祝您生活愉快，再见。"
ITEMS = ["电饭煲", "蓝牙耳机", "羽绒服", "猕猴桃", "扫地机器人", "手机壳"]
NAMES = ["王", "李", "张", "刘", "陈"]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        shop=rng.choice(SHOPS),
        n=rng.randint(100, 9999),
        name=rng.choice(NAMES),
        order=rng.randint(10**9, 10**10 - 1),
        item=rng.choice(ITEMS),
        price=rng.choice([39, 99, 299, 1299, 2499]),
        mobile=f"1{rng.choice('3578')}{rng.randint(10**8, 10**9 - 1)}",
        month=rng.randint(1, 12),
        day=rng.randint(1, 28),
    )


def write_calls(path: Path, n_calls: int, n_turns: int, seed: int) -> int:
    """``n_calls`` chat calls of ``n_turns`` turns (times on), as one CSV. Returns the rows."""
    rng = random.Random(seed)
    rows = 0
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["call_id", "role", "text", "start", "end", "agent_id", "agent_name", "team", "started_at"])
        for c in range(n_calls):
            agent = rng.randint(1, 40)
            meta = [
                f"a{agent:03d}",
                f"{rng.choice(NAMES)}{agent}",
                f"team{agent % 4}",
                f"2026-11-23 {8 + c % 12:02d}:00:00",
            ]
            t = 0.0
            kind = rng.random()  # about 1 in 10 calls has an unhappy customer, 1 in 20 a brush-off
            for i in range(n_turns):
                role = "agent" if i % 2 == 0 else "customer"
                if i == 0:
                    text = _fill(rng.choice(GREETINGS), rng)
                elif i == n_turns - 2:
                    text = CLOSING
                elif role == "customer" and kind < 0.1 and rng.random() < 0.3:
                    text = rng.choice(UNHAPPY)
                elif role == "agent" and 0.1 <= kind < 0.15 and rng.random() < 0.2:
                    text = rng.choice(BRUSH_OFF)
                else:
                    text = _fill(rng.choice(AGENT if role == "agent" else CUSTOMER), rng)
                length = round(0.15 * len(text), 2)
                w.writerow(
                    [
                        f"chat{c:05d}",
                        role,
                        text,
                        round(t, 2),
                        round(t + length, 2),
                        *(meta if i == 0 else [""] * 4),
                    ]
                )
                t += length + rng.uniform(0.5, 8.0)
                rows += 1
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", help="write a cProfile of the run to this file")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says

    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        work = Path(tmp)
        csv_path = work / "turns.csv"
        rows = write_calls(csv_path, args.calls, args.turns, args.seed)
        settings = load_settings(
            environ={}, overrides={"store": {"db": str(work / "qa.db")}, "sampling": {"night": "2026-11-23"}}
        )
        make_context(settings, work / "warm", audio=False)  # models loaded once, outside the timing
        import speechqa.store  # noqa: F401  (SQLAlchemy: imported once per process, not per call)

        t0 = time.perf_counter()
        pd.read_csv(csv_path, encoding="utf-8-sig", dtype=str)
        read_csv_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        read_transcripts(csv_path)
        reader_s = time.perf_counter() - t0

        t0, cpu0 = time.perf_counter(), time.process_time()
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            summary = profiler.runcall(run_transcripts, csv_path, work / "out", settings)
            profiler.dump_stats(args.profile)
        else:
            summary = run_transcripts(csv_path, work / "out", settings)
        run_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0

    counts = summary.run_info["counts"]
    print(f"import_calls={counts['ok']} turns={counts['turns']} rows={rows} failed={counts['failed']}")
    print(f"import_calls_per_s={counts['ok'] / run_s:.1f} (target 200)")
    print(f"import_turns_per_s={counts['turns'] / run_s:.0f}")
    print(f"import_calls_per_cpu_s={counts['ok'] / cpu_s:.1f} (CPU time of this process; wall time counts "
          f"other load on the core)")
    print(f"import_seconds={run_s:.2f} import_cpu_seconds={cpu_s:.2f}")
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"import_peak_rss_mb={peak_mb:.0f} ({peak_mb / max(counts['ok'], 1) * 1024:.0f} KiB per call; "
          f"issue 11's target: flat with the number of calls, at most 500 MB)")
    for stage, seconds in summary.run_info["timings_s"].items():
        print(f"import_stage_{stage}_s={seconds:.3f} ({100 * seconds / run_s:.1f}%)")
    print(f"import_vs_pandas_read_csv_ratio={run_s / read_csv_s:.1f} (pandas read_csv {read_csv_s:.3f}s)")
    print(f"import_vs_speechqa_reader_ratio={run_s / reader_s:.1f} (read_transcripts {reader_s:.3f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
