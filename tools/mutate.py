"""Mutation testing for prefetch_generator: does tests/core fail when the code is wrong?

Each mutant changes one thing in one module of ``prefetch_generator/``: a
comparison or boolean operator swapped, a condition negated, a constant
changed, an arithmetic operator swapped, or a statement replaced by ``pass``.
For each, the package, ``tests/`` and the pytest configuration are copied to a
scratch directory with the mutant in place, and ``tests/core`` runs there (so
neither the import path nor the tests' subprocesses can reach the original),
stopping at the first failure, every test bounded by ``--timeout``. A mutant
is killed when the suite fails. The survivors are printed with their place and
change: each is either a gap in the tests or an equivalent mutant (one that
cannot change behaviour).

    python tools/mutate.py                       # every module, 2 at a time
    python tools/mutate.py --jobs 1 _channel.py  # one module
    python tools/mutate.py --sample 160          # a uniform sample (seeded)
    python tools/mutate.py --since HEAD~3        # the lines changed since a revision
"""

import argparse
import ast
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "prefetch_generator"
# Every file of tests/core; the subprocess-heavy exit tests last, so that
# most mutants die in the first seconds.
SLOW_LAST = ("test_exit.py",)

SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
}


def deletable(statement):
    """Statements worth deleting: not docstrings, definitions, imports or ``pass``."""
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return False
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    return not isinstance(statement, (*kinds, ast.Pass))


class Mutant(ast.NodeTransformer):
    """Applies mutation number ``target``, counting every site in visiting order.

    With a target that is never reached it only counts: ``sites`` is then the
    number of mutants of the tree.
    """

    def __init__(self, target):
        self.target = target
        self.sites = 0
        self.applied = None

    def hit(self, node, description):
        self.sites += 1
        if self.sites - 1 == self.target:
            self.applied = (node.lineno, description)
            return True
        return False

    def generic_visit(self, node):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if not isinstance(statements, list):
                continue
            for position, statement in enumerate(statements):
                kind = type(statement).__name__
                if deletable(statement) and self.hit(statement, f"delete the {kind} statement"):
                    statements[position] = ast.copy_location(ast.Pass(), statement)
        return super().generic_visit(node)

    def swap(self, node, operator):
        swapped = SWAPS.get(type(operator))
        if swapped and self.hit(node, f"{type(operator).__name__} -> {swapped.__name__}"):
            return swapped()
        return operator

    def visit_Compare(self, node):
        node.ops = [self.swap(node, operator) for operator in node.ops]
        return self.generic_visit(node)

    def visit_BoolOp(self, node):
        node.op = self.swap(node, node.op)
        return self.generic_visit(node)

    visit_BinOp = visit_AugAssign = visit_BoolOp

    def visit_Constant(self, node):
        value = node.value
        if isinstance(value, bool):
            replacement = not value
        elif isinstance(value, (int, float)):
            replacement = value + 1
        else:
            return node
        if self.hit(node, f"constant {value!r} -> {replacement!r}"):
            node.value = replacement
        return node

    def visit_If(self, node):
        if self.hit(node, f"negate the {type(node).__name__.lower()} condition"):
            node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        return self.generic_visit(node)

    visit_While = visit_If

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not) and self.hit(node, "drop 'not'"):
            return self.visit(node.operand)
        return self.generic_visit(node)


def all_mutants(module):
    """(line, description, source) for every mutant of ``module``."""
    source = module.read_text()
    counter = Mutant(target=-1)
    counter.visit(ast.parse(source))
    mutants = []
    for target in range(counter.sites):
        mutant = Mutant(target)
        tree = mutant.visit(ast.parse(source))
        mutants.append((*mutant.applied, ast.unparse(ast.fix_missing_locations(tree))))
    return mutants


def changed_lines(module, revision):
    """Line numbers of ``module`` that differ from git ``revision`` (added or changed)."""
    diff = subprocess.run(
        ["git", "diff", "-U0", revision, "--", str(module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = set()
    for hunk in re.finditer(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", diff, re.MULTILINE):
        start, count = int(hunk[1]), int(hunk[2] or 1)
        lines.update(range(start, start + count))
    return lines


def run_suite(checkout, timeout):
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    tests = sorted(path.name for path in (ROOT / "tests" / "core").glob("test_*.py"))
    tests.sort(key=lambda name: name in SLOW_LAST)
    command += [f"--timeout={timeout}", *[f"tests/core/{name}" for name in tests]]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    try:
        result = subprocess.run(
            command,
            cwd=checkout,
            env=env,
            capture_output=True,
            timeout=timeout * 20,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return False, "the suite timed out"
    return result.returncode == 0, result.stdout.decode(errors="replace")


def check(module, mutant, timeout):
    line, description, source = mutant
    with tempfile.TemporaryDirectory() as scratch:
        checkout = Path(scratch)
        shutil.copytree(PACKAGE, checkout / PACKAGE.name)
        shutil.copytree(ROOT / "tests", checkout / "tests")
        shutil.copy(ROOT / "pyproject.toml", checkout)
        (checkout / PACKAGE.name / module.name).write_text(source)
        survived, _ = run_suite(checkout, timeout)
    return module.name, line, description, survived


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module file names (default: all)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=20, help="seconds per test")
    parser.add_argument("--sample", type=int, help="run this many mutants, drawn uniformly")
    parser.add_argument("--seed", type=int, default=1, help="for --sample")
    parser.add_argument("--since", help="only mutants on lines changed since this git revision")
    args = parser.parse_args()
    names = args.modules or sorted(p.name for p in PACKAGE.glob("*.py"))
    modules = [PACKAGE / name for name in names if name != "__main__.py"]
    work = [(module, mutant) for module in modules for mutant in all_mutants(module)]
    if args.since is not None:
        changed = {module: changed_lines(module, args.since) for module in modules}
        work = [(module, mutant) for module, mutant in work if mutant[0] in changed[module]]
    print(f"{len(work)} mutants in {len(modules)} modules", flush=True)
    if args.sample is not None and args.sample < len(work):
        work = random.Random(args.seed).sample(work, args.sample)
        print(f"running a sample of {len(work)} (seed {args.seed})", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(ROOT, scratch, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        passed, output = run_suite(scratch, args.timeout)
        if not passed:
            sys.exit(f"{output}\ntests/core fails on the unmutated package: fix that first")
    survivors = []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(check, module, mutant, args.timeout) for module, mutant in work]
        for done, future in enumerate(futures, 1):
            name, line, description, survived = future.result()
            verdict = "SURVIVED" if survived else "killed"
            print(f"[{done}/{len(work)}] {verdict} {name}:{line}: {description}", flush=True)
            if survived:
                survivors.append(f"{name}:{line}: {description}")
    killed = len(work) - len(survivors)
    print(f"\nkilled {killed} of {len(work)} mutants ({killed / len(work):.1%})")
    for survivor in survivors:
        print("survivor:", survivor)


if __name__ == "__main__":
    main()
