"""Grade-school math word problems with worked solutions, computed rather than written by hand.

Each template draws names, objects and numbers from a seeded ``random.Random`` and works the problem out,
so every question has a correct step-by-step answer. The demo corpus and the demo reference set draw from
these templates with separate random streams; the reference set keeps only questions not in the corpus.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

NAMES = ["Ava", "Liam", "Maya", "Noah", "Zara", "Omar", "Ines", "Kenji", "Lena", "Tomas", "Priya", "Felix",
         "Chloe", "Mateo", "Sofia", "Ravi", "Elena", "Jonas", "Amara", "Hugo", "Nadia", "Leo", "Yuki", "Grace"]
ITEMS = ["apples", "stickers", "marbles", "pencils", "cookies", "books", "stamps", "shells", "cards", "beads",
         "oranges", "cupcakes", "balloons", "postcards", "crayons"]
CONTAINERS = ["boxes", "bags", "baskets", "crates", "jars", "packs"]


@dataclass(frozen=True)
class MathProblem:
    template: str
    question: str
    steps: tuple[str, ...]
    answer: str


def _share(rng: random.Random) -> MathProblem:
    a, b = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    total = rng.randint(12, 90)
    given = rng.randint(2, total // 2)
    bought = rng.randint(3, 30)
    left = total - given + bought
    return MathProblem("share", f"{a} has {total} {item}. {a} gives {given} to {b} and then buys {bought} more. "
                       f"How many {item} does {a} have now?",
                       (f"After giving away {given}, {a} has {total} - {given} = {total - given} {item}.",
                        f"After buying {bought} more, {a} has {total - given} + {bought} = {left} {item}."), str(left))


def _groups(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    item, box = rng.choice(ITEMS), rng.choice(CONTAINERS)
    n, per = rng.randint(3, 15), rng.randint(4, 24)
    extra = rng.randint(0, 9)
    total = n * per + extra
    return MathProblem("groups", f"{name} packs {item} into {n} {box} with {per} {item} in each, and has {extra} "
                       f"{item} left over. How many {item} did {name} start with?",
                       (f"The {box} hold {n} x {per} = {n * per} {item}.",
                        f"Adding the {extra} left over gives {n * per} + {extra} = {total}."), str(total))


def _price(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    item = rng.choice(["notebooks", "tickets", "sandwiches", "plants", "T-shirts", "mugs"])
    qty, price = rng.randint(2, 12), rng.randint(2, 25)
    paid = (qty * price // 10 + 1 + rng.randint(0, 3)) * 10
    change = paid - qty * price
    return MathProblem("price", f"{name} buys {qty} {item} at ${price} each and pays with ${paid}. "
                       f"How much change does {name} get?",
                       (f"The {item} cost {qty} x ${price} = ${qty * price}.",
                        f"The change is ${paid} - ${qty * price} = ${change}."), f"${change}")


def _speed(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    vehicle = rng.choice(["train", "bus", "car", "bike", "boat"])
    speed, hours = rng.choice([12, 15, 20, 24, 30, 36, 40, 45, 48, 60, 72, 80]), rng.randint(2, 7)
    return MathProblem("speed", f"A {vehicle} travels at {speed} km per hour. {name} rides it for {hours} hours. "
                       f"How far does {name} travel?",
                       (f"Distance = speed x time = {speed} x {hours}.", f"{speed} x {hours} = {speed * hours} km."),
                       f"{speed * hours} km")


def _fraction(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    denom = rng.choice([2, 3, 4, 5, 6, 8])
    num = rng.randint(1, denom - 1)
    total = denom * rng.randint(3, 15)
    part = total * num // denom
    item = rng.choice(["pages", "kilometres", "tasks", "questions", "laps"])
    return MathProblem("fraction", f"{name} has {total} {item} to finish and completes {num}/{denom} of them on "
                       f"Monday. How many {item} are left?",
                       (f"{num}/{denom} of {total} is {total} / {denom} x {num} = {part}.",
                        f"Left: {total} - {part} = {total - part}."), str(total - part))


def _percent(rng: random.Random) -> MathProblem:
    item = rng.choice(["jacket", "lamp", "bicycle", "guitar", "backpack", "tablet"])
    price = rng.choice([20, 40, 50, 60, 80, 120, 150, 200, 250])
    pct = rng.choice([10, 15, 20, 25, 30, 40, 50])
    off = price * pct // 100
    return MathProblem("percent", f"A {item} costs ${price}. It is on sale for {pct}% off. What is the sale price?",
                       (f"The discount is {pct}% of ${price} = ${off}.", f"The sale price is ${price} - ${off} = ${price - off}."),
                       f"${price - off}")


def _age(rng: random.Random) -> MathProblem:
    a, b = rng.sample(NAMES, 2)
    age_b = rng.randint(4, 15)
    k = rng.randint(2, 4)
    years = rng.randint(2, 10)
    return MathProblem("age", f"{a} is {k} times as old as {b}. {b} is {age_b} years old. How old will {a} be in "
                       f"{years} years?",
                       (f"{a} is {k} x {age_b} = {k * age_b} years old now.",
                        f"In {years} years {a} will be {k * age_b} + {years} = {k * age_b + years}."), str(k * age_b + years))


def _rectangle(rng: random.Random) -> MathProblem:
    thing = rng.choice(["garden", "room", "playground", "field", "poster", "rug"])
    w, h = rng.randint(3, 30), rng.randint(3, 30)
    ask_area = rng.random() < 0.5
    if ask_area:
        return MathProblem("rectangle", f"A rectangular {thing} is {w} m long and {h} m wide. What is its area?",
                           (f"Area = length x width = {w} x {h}.", f"{w} x {h} = {w * h} square metres."), f"{w * h} m^2")
    return MathProblem("rectangle", f"A rectangular {thing} is {w} m long and {h} m wide. How much fencing is "
                       f"needed to go around it?",
                       (f"Perimeter = 2 x (length + width) = 2 x ({w} + {h}).", f"2 x {w + h} = {2 * (w + h)} m."),
                       f"{2 * (w + h)} m")


def _work_rate(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    per_hour, hours, days = rng.randint(3, 20), rng.randint(2, 8), rng.randint(2, 6)
    thing = rng.choice(["bracelets", "birdhouses", "paintings", "scarves", "pies", "models"])
    total = per_hour * hours * days
    return MathProblem("work_rate", f"{name} makes {per_hour} {thing} per hour and works {hours} hours a day. "
                       f"How many {thing} does {name} make in {days} days?",
                       (f"Per day: {per_hour} x {hours} = {per_hour * hours} {thing}.",
                        f"In {days} days: {per_hour * hours} x {days} = {total}."), str(total))


def _average(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    n = rng.randint(3, 5)
    mean = rng.randint(60, 95)
    scores = [mean + rng.randint(-8, 8) for _ in range(n - 1)]
    last = mean * n - sum(scores)
    scores.append(last)
    listed = ", ".join(map(str, scores))
    return MathProblem("average", f"{name} scored {listed} on {n} tests. What is the average score?",
                       (f"The total is {' + '.join(map(str, scores))} = {sum(scores)}.",
                        f"The average is {sum(scores)} / {n} = {mean}."), str(mean))


def _savings(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    goal = rng.choice([60, 90, 120, 150, 180, 240, 300])
    saved = rng.randint(0, goal // 3)
    weekly = rng.choice([5, 6, 10, 12, 15, 20])
    weeks = -(-(goal - saved) // weekly)
    thing = rng.choice(["a bike", "a game console", "a telescope", "new shoes", "a camera", "a guitar"])
    return MathProblem("savings", f"{name} wants {thing} that costs ${goal}. {name} has ${saved} and saves ${weekly} "
                       f"each week. How many weeks until {name} can buy it?",
                       (f"{name} still needs ${goal} - ${saved} = ${goal - saved}.",
                        f"${goal - saved} / ${weekly} per week = {(goal - saved) / weekly:g}, so {weeks} weeks."), str(weeks))


def _recipe(rng: random.Random) -> MathProblem:
    food = rng.choice(["pancakes", "muffins", "cookies", "bread rolls"])
    base, flour = rng.choice([4, 6, 8, 12]), rng.choice([150, 200, 240, 300])
    wanted = base * rng.randint(2, 5)
    need = flour * wanted // base
    return MathProblem("recipe", f"A recipe for {base} {food} uses {flour} g of flour. How much flour is needed "
                       f"for {wanted} {food}?",
                       (f"{wanted} {food} is {wanted} / {base} = {wanted // base} times the recipe.",
                        f"{flour} g x {wanted // base} = {need} g."), f"{need} g")


def _time(rng: random.Random) -> MathProblem:
    name = rng.choice(NAMES)
    start_h, start_m = rng.randint(7, 16), rng.choice([0, 10, 15, 20, 30, 40, 45])
    dur = rng.choice([35, 50, 75, 90, 105, 125, 140])
    end = start_h * 60 + start_m + dur
    activity = rng.choice(["a movie", "a football match", "a piano lesson", "a hike", "a museum tour"])
    return MathProblem("time", f"{name} starts {activity} at {start_h}:{start_m:02d} and it lasts {dur} minutes. "
                       f"What time does it end?",
                       (f"{dur} minutes is {dur // 60} hour(s) and {dur % 60} minutes.",
                        f"{start_h}:{start_m:02d} plus {dur} minutes is {end // 60}:{end % 60:02d}."),
                       f"{end // 60}:{end % 60:02d}")


def _compare(rng: random.Random) -> MathProblem:
    a, b, c = rng.sample(NAMES, 3)
    item = rng.choice(ITEMS)
    x = rng.randint(5, 40)
    more, fewer = rng.randint(2, 15), rng.randint(1, 4)
    y, z = x + more, x + more - fewer
    return MathProblem("compare", f"{a} has {x} {item}. {b} has {more} more than {a}, and {c} has {fewer} fewer "
                       f"than {b}. How many {item} do they have altogether?",
                       (f"{b} has {x} + {more} = {y}.", f"{c} has {y} - {fewer} = {z}.",
                        f"Altogether: {x} + {y} + {z} = {x + y + z}."), str(x + y + z))


TEMPLATES: list[Callable[[random.Random], MathProblem]] = [
    _share, _groups, _price, _speed, _fraction, _percent, _age, _rectangle, _work_rate, _average, _savings,
    _recipe, _time, _compare,
]


_recorders: list[set[str]] = []


@contextlib.contextmanager
def recorded_questions() -> Iterator[set[str]]:
    """Every question :func:`math_problem` makes inside the block, whatever page it ends up on (the reference set is
    kept disjoint from them)."""
    questions: set[str] = set()
    _recorders.append(questions)
    try:
        yield questions
    finally:
        _recorders.remove(questions)


def math_problem(rng: random.Random) -> MathProblem:
    problem = TEMPLATES[rng.randrange(len(TEMPLATES))](rng)
    for questions in _recorders:
        questions.add(problem.question)
    return problem
