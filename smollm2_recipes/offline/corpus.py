"""The embedded corpus: four offline stand-ins for SmolLM2's sources, built deterministically from what
every Python installation has, each with a held-out split (5% of documents, chosen by a hash of the
document id, so a document never moves between splits).

- `web`:  English reference prose: the `pydoc_data.topics` pages and standard-library docstrings
          (the FineWeb-Edu/DCLM stand-in).
- `code`: standard-library source files (StarCoderData/Stack-Edu stand-in).
- `math`: generated word problems with step-by-step solutions whose answers are checked by an
          independent computation (the FineMath stand-in).
- `long`: documents of >= 8192 tokens with the real SmolLM2 tokenizer: large source files and
          "books" of consecutive reference pages (the long-document stand-in for context extension).

Each corpus is a cache folder (`offline.cache.cached`: built in a temp folder, verified, renamed atomically)
holding `train.parquet` and `test.parquet` with columns `id` and `text`. `smollm2 corpus build` builds
them; `embedded:corpus/NAME` in a recipe resolves here.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import sys
import sysconfig
from fractions import Fraction
from pathlib import Path

from smollm2_recipes.errors import UserError
from smollm2_recipes.offline import cache
from smollm2_recipes.offline.embedded import BASE_TOKENIZER, materialise
from smollm2_recipes.runkit.parsing import ArgumentParser

VERSION = 2
NAMES = ("web", "code", "math", "long")
LONG_MIN_TOKENS = 8192
HELD_OUT_EVERY = 20  # 1 document in 20 goes to the held-out split
SKIP_DIRS = {"test", "tests", "site-packages", "idle_test", "__pycache__", "encodings", "pydoc_data", "lib2to3", "turtledemo"}


def cache_name(name: str) -> str:
    # The stdlib differs between Python versions, so the corpus is keyed by the version too.
    return f"corpus-{name}-v{VERSION}-py{sys.version_info.major}{sys.version_info.minor}"


def corpus_path(name: str) -> Path:
    """The folder of embedded corpus `name` (built on first use)."""
    if name not in BUILDERS:
        raise UserError(f"Unknown embedded corpus '{name}'. Valid: {', '.join('embedded:corpus/' + n for n in NAMES)}.")
    return cache.cached(cache_name(name), lambda out: _write(out, BUILDERS[name]()))


def is_held_out(doc_id: str) -> bool:
    return int(hashlib.sha1(doc_id.encode()).hexdigest(), 16) % HELD_OUT_EVERY == 0


def _write(out: Path, docs: list[tuple[str, str]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not docs:
        raise RuntimeError("corpus builder produced no documents")
    splits = {"train": [], "test": []}
    for doc_id, text in docs:
        splits["test" if is_held_out(doc_id) else "train"].append((doc_id, text))
    for split, rows in splits.items():
        table = pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]})
        pq.write_table(table, out / f"{split}.parquet")
    info = {split: {"documents": len(rows), "characters": sum(len(r[1]) for r in rows)} for split, rows in splits.items()}
    (out / "info.json").write_text(json.dumps(info, indent=1))


# ---------------------------------------------------------------------------------------------------
# web and code: the standard library


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP_DIRS & set(rel.parts[:-1]) or rel.name.startswith(("test_", "_pydecimal")):
            continue
        files.append(path)
    return files


def _module_name(path: Path) -> str:
    rel = path.relative_to(Path(sysconfig.get_paths()["stdlib"])).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _docstring_page(path: Path) -> str | None:
    """A module's docstrings as one reference page: the module's, then each public class and function's."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None
    module = _module_name(path)
    parts = []
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(f"{module}\n{'=' * len(module)}\n\n{doc}")
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            d = ast.get_docstring(node)
            if d and len(d) > 40:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                parts.append(f"{module}.{node.name} ({kind})\n\n{d}")
                if isinstance(node, ast.ClassDef):
                    for sub in node.body:
                        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
                            sd = ast.get_docstring(sub)
                            if sd and len(sd) > 40:
                                parts.append(f"{module}.{node.name}.{sub.name}\n\n{sd}")
    text = "\n\n".join(parts)
    return text if len(text) >= 300 else None


def build_web() -> list[tuple[str, str]]:
    import pydoc_data.topics

    docs = [(f"topic:{k}", v.strip()) for k, v in sorted(pydoc_data.topics.topics.items()) if v.strip()]
    for path in stdlib_files():
        page = _docstring_page(path)
        if page:
            docs.append((f"docstrings:{_module_name(path)}", page))
    return docs


def build_code() -> list[tuple[str, str]]:
    docs = []
    for path in stdlib_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if 200 <= len(text) <= 400_000:
            docs.append((f"code:{_module_name(path)}", text))
    return docs


# ---------------------------------------------------------------------------------------------------
# math: word problems with worked, checked solutions


NAMES_ = ["Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Liam", "Maya", "Noah", "Olga", "Priya"]
ITEMS = [("notebook", "notebooks"), ("pen", "pens"), ("apple", "apples"), ("ticket", "tickets"), ("book", "books"), ("plant", "plants")]


def _fmt(x) -> str:
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    if 100 % x.denominator == 0 or x.denominator in (2, 4, 5, 8, 10, 20, 25, 50):
        return f"{float(x):g}"
    return f"{x.numerator}/{x.denominator}"


def _shopping(r):
    who, (_, a2), (_, b2) = r.choice(NAMES_), *r.sample(ITEMS, 2)
    na, nb = r.randint(2, 9), r.randint(2, 9)
    pa, pb = Fraction(r.randint(2, 40), 2), Fraction(r.randint(2, 30), 4)
    cost = na * pa + nb * pb
    paid = ((int(cost) // 10) + 1 + r.randint(0, 3)) * 10
    steps = [f"The {a2} cost {na} x ${_fmt(pa)} = ${_fmt(na * pa)}.",
             f"The {b2} cost {nb} x ${_fmt(pb)} = ${_fmt(nb * pb)}.",
             f"Together that is ${_fmt(na * pa)} + ${_fmt(nb * pb)} = ${_fmt(cost)}.",
             f"The change is ${paid} - ${_fmt(cost)} = ${_fmt(paid - cost)}."]
    q = (f"{who} buys {na} {a2} at ${_fmt(pa)} each and {nb} {b2} at ${_fmt(pb)} each, "
         f"and pays with ${paid}. How much change does {who} get?")
    answer = paid - cost
    check = paid - sum([pa] * na) - sum([pb] * nb)
    return q, steps, answer, check == answer


def _travel(r):
    speed, hours = r.randint(30, 120), Fraction(r.randint(2, 16), 4)
    back = r.choice([s for s in range(30, 121, 5) if s != speed and (speed * hours / s).denominator <= 4] or [speed])
    d = speed * hours
    t_back = d / back
    q = (f"A car drives at {speed} km/h for {_fmt(hours)} hours, then returns the same way at {back} km/h. "
         f"How many hours does the whole trip take?")
    steps = [f"Distance = speed x time = {speed} x {_fmt(hours)} = {_fmt(d)} km.",
             f"The way back takes {_fmt(d)} / {back} = {_fmt(t_back)} hours.",
             f"In total: {_fmt(hours)} + {_fmt(t_back)} = {_fmt(hours + t_back)} hours."]
    answer = hours + t_back
    return q, steps, answer, answer * 1 == Fraction(speed * hours, 1) * (Fraction(1, speed) + Fraction(1, back))


def _tank(r):
    rate, minutes, start = r.randint(3, 25), r.randint(4, 40), r.randint(0, 200)
    cap = start + rate * minutes
    q = (f"A tank holds {cap} liters. It already contains {start} liters, and a pump adds {rate} liters per minute. "
         f"How many minutes until the tank is full?")
    steps = [f"Liters still needed: {cap} - {start} = {cap - start}.",
             f"Minutes: {cap - start} / {rate} = {minutes}."]
    return q, steps, Fraction(minutes), start + rate * minutes == cap


def _ages(r):
    son, k = r.randint(3, 15), r.randint(3, 6)
    years = (k - 2) * son  # then the parent is exactly twice as old
    who = r.choice(NAMES_)
    q = (f"{who} is {k} times as old as their child. In {years} years, {who} will be twice as old as the child. "
         f"How old is the child now?")
    steps = [f"Let the child's age be c. Then {who} is {k}c.",
             f"In {years} years: {k}c + {years} = 2(c + {years}).",
             f"So {k}c + {years} = 2c + {2 * years}, which gives {k - 2}c = {years}.",
             f"c = {years} / {k - 2} = {son}."]
    return q, steps, Fraction(son), k * son + years == 2 * (son + years)


def _discount(r):
    price, pct, tax = r.randint(4, 60) * 5, r.choice([10, 15, 20, 25, 30, 40, 50]), r.choice([0, 5, 8, 10])
    sale = Fraction(price) * (100 - pct) / 100
    total = sale * (100 + tax) / 100
    q = f"A jacket costs ${price}. It is {pct}% off, and then a {tax}% sales tax is added. What is the final price?"
    steps = [f"The discount is {pct}% of ${price} = ${_fmt(Fraction(price * pct, 100))}.",
             f"The sale price is ${price} - ${_fmt(Fraction(price * pct, 100))} = ${_fmt(sale)}.",
             f"The tax is {tax}% of ${_fmt(sale)} = ${_fmt(sale * tax / 100)}.",
             f"The final price is ${_fmt(sale)} + ${_fmt(sale * tax / 100)} = ${_fmt(total)}."]
    return q, steps, total, total == Fraction(price * (100 - pct) * (100 + tax), 10000)


def _garden(r):
    w, l = sorted((r.randint(3, 30), r.randint(3, 40)))
    per = 2 * (w + l)
    gap = r.choice([g for g in (1, 2, 3, 4, 5) if per % g == 0])
    q = (f"A rectangular garden is {l} m long and {w} m wide. A fence around it has a post every {gap} m, "
         f"starting at a corner. How many posts are needed?")
    steps = [f"The perimeter is 2 x ({l} + {w}) = {per} m.",
             f"Posts on a closed loop: {per} / {gap} = {per // gap}."]
    return q, steps, Fraction(per // gap), len(range(0, per, gap)) == per // gap


def _equation(r):
    x, a, b = r.randint(-12, 25), r.randint(2, 12), r.randint(-30, 30)
    c = a * x + b
    q = f"Solve for x: {a}x {'+' if b >= 0 else '-'} {abs(b)} = {c}."
    steps = [f"Subtract {b} from both sides: {a}x = {c} - ({b}) = {c - b}.",
             f"Divide by {a}: x = {c - b} / {a} = {x}.",
             f"Check: {a} x {x} {'+' if b >= 0 else '-'} {abs(b)} = {a * x + b}."]
    return q, steps, Fraction(x), a * x + b == c


def _average(r):
    n = r.randint(3, 6)
    target = r.randint(60, 95)
    scores = [r.randint(50, 100) for _ in range(n - 1)]
    last = target * n - sum(scores)
    if not 0 <= last <= 100:
        return None
    who = r.choice(NAMES_)
    q = (f"{who} scored {', '.join(map(str, scores))} on the first {n - 1} tests. "
         f"What score on test {n} makes the average exactly {target}?")
    steps = [f"The total needed is {target} x {n} = {target * n}.",
             f"The first {n - 1} tests add up to {sum(scores)}.",
             f"The last score must be {target * n} - {sum(scores)} = {last}."]
    return q, steps, Fraction(last), Fraction(sum(scores) + last, n) == target


def _recipe(r):
    per, batches = Fraction(r.randint(1, 15), r.choice([2, 3, 4, 8])), r.randint(2, 40)
    who, what = r.choice(NAMES_), r.choice(["flour", "sugar", "milk", "rice", "oats", "water"])
    unit = "cup" if per <= 1 else "cups"
    q = f"{who}'s recipe needs {_fmt(per)} {unit} of {what} per batch. How many cups of {what} are needed for {batches} batches?"
    steps = [f"Multiply: {batches} x {_fmt(per)} = {_fmt(per * batches)} cups."]
    return q, steps, per * batches, sum([per] * batches) == per * batches


PROBLEMS = [_shopping, _travel, _tank, _ages, _discount, _garden, _equation, _average, _recipe]
MATH_DOCUMENTS = 20_000


def math_problem(r: random.Random) -> str | None:
    made = r.choice(PROBLEMS)(r)
    if made is None:
        return None
    q, steps, answer, checked = made
    if not checked:  # the independent check disagrees: never ship a wrong answer
        return None
    lines = [f"Problem: {q}", "", "Solution:"] + [f"Step {i}: {s}" for i, s in enumerate(steps, 1)]
    lines += ["", f"Answer: {_fmt(answer)}"]
    return "\n".join(lines)


def build_math() -> list[tuple[str, str]]:
    r = random.Random(20241101)
    docs, seen = [], set()
    while len(docs) < MATH_DOCUMENTS:
        text = math_problem(r)
        if text is not None and text not in seen:  # no repeated problems: repetition is the epochs' job
            seen.add(text)
            docs.append((f"math:{len(docs):06d}", text))
    return docs


# ---------------------------------------------------------------------------------------------------
# long: >= 8192 tokens with the real tokenizer


def build_long() -> list[tuple[str, str]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(materialise(BASE_TOKENIZER))
    backend = tokenizer._tokenizer

    def n_tokens(texts):
        return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]

    # Large source files, whole (code is ~3.5 characters per token, so shorter files cannot qualify).
    code = [(i, t) for i, t in build_code() if len(t) >= LONG_MIN_TOKENS * 2.5]
    docs = [(f"long-{i}", t) for (i, t), n in zip(code, n_tokens([t for _, t in code])) if n >= LONG_MIN_TOKENS]
    # "Books": consecutive reference pages joined until the book passes the minimum.
    web = build_web()
    book, book_no = [], 0
    for _, text in web:
        book.append(text)
        if sum(map(len, book)) >= LONG_MIN_TOKENS * 4.5:
            joined = "\n\n\n".join(book)
            if n_tokens([joined])[0] >= LONG_MIN_TOKENS:
                docs.append((f"long-book:{book_no:04d}", f"Python Reference, volume {book_no + 1}\n\n{joined}"))
                book, book_no = [], book_no + 1
    return docs


BUILDERS = {"web": build_web, "code": build_code, "math": build_math, "long": build_long}


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 corpus build", description=__doc__.split("\n\n")[0])
    # no argparse `choices`: Python 3.11 checks an empty nargs="*" list against them and refuses it
    parser.add_argument("names", nargs="*", help=f"which corpora (default: all of {', '.join(NAMES)})")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in NAMES:
            raise UserError(f"unknown corpus '{name}'; valid: {', '.join(NAMES)}.")
    from tqdm.auto import tqdm

    summary = {}
    for name in tqdm(args.names or list(NAMES), desc="corpus", disable=args.json):
        path = corpus_path(name)
        info = json.loads((path / "info.json").read_text())
        summary[name] = {"path": str(path), **info}
    if args.json:
        print(json.dumps(summary))
    else:
        for name, s in summary.items():
            where = "built now" if cache_name(name) in cache.BUILT_THIS_PROCESS else "cached"
            print(f"embedded:corpus/{name:<5} train {s['train']['documents']:>6} docs {s['train']['characters']:>11,} chars | "
                  f"test {s['test']['documents']:>5} docs | {s['path']}  ({where})")
    return 0
