"""Writers of demo web documents, one function per kind of page.

Each writer takes a seeded ``random.Random`` and returns the page text. Wording varies through several
templates and filler pools per kind, so that no kind is one sentence pattern. Math word problems come from
:mod:`equal_dagster.demo.math_problems`.
"""

from __future__ import annotations

import random

from equal_dagster.demo.math_problems import MathProblem, math_problem

FIRST_NAMES = [
    "Ava", "Liam", "Maya", "Noah", "Zara", "Omar", "Ines", "Kenji", "Lena", "Tomas", "Priya", "Felix", "Chloe",
    "Mateo", "Sofia", "Ravi", "Elena", "Jonas", "Amara", "Hugo", "Nadia", "Leo", "Yuki", "Grace", "Samir",
]
CITIES = [
    "Lisbon", "Denver", "Osaka", "Nairobi", "Leeds", "Porto", "Austin", "Krakow", "Quebec", "Perth", "Ghent",
    "Tucson", "Bergen", "Malaga", "Dublin", "Pune", "Adelaide", "Tallinn", "Cork", "Bologna",
]
SITES = [
    "example-news.com", "dailyledger.net", "cityherald.org", "techpulse.io", "homeandgarden.co", "mathhelp.org",
    "codeanswers.dev", "shopzone.store", "wikifacts.info", "forum.hobbyhub.net", "learnquick.edu", "faqbase.com",
]


def pick(rng: random.Random, options: list[str]) -> str:
    return options[rng.randrange(len(options))]


def sentence_pool(rng: random.Random, pool: list[str], k: int) -> str:
    return " ".join(rng.sample(pool, k=min(k, len(pool))))


# -- math ----------------------------------------------------------------------------------------------
def _problem_block(p: MathProblem, style: int, number: int) -> str:
    steps = "\n".join(p.steps)
    if style == 0:
        return f"Problem {number}. {p.question}\n\nSolution. {steps}\nThe answer is {p.answer}."
    if style == 1:
        return f"Problem: {p.question}\nSolution:\n{steps}\nAnswer: {p.answer}"
    if style == 2:
        return f"Q: {p.question}\nA: {steps} So the answer is {p.answer}."
    return f"Example {number}. {p.question}\nSolution: {steps}\nTherefore, the answer is {p.answer}."


MATH_INTROS = [
    "Practice set for grade 5 students. Work each problem before reading the solution.",
    "Here are some word problems from this week's homework, with worked solutions.",
    "Try these on your own first! Solutions are below each problem.",
    "Worked examples: rates, fractions and money problems.",
    "From our free worksheet collection. Print it or solve on screen.",
    "Revision sheet - mixed word problems (answers included).",
    "Tutor notes: step by step solutions to common word problems.",
]
MATH_OUTROS = [
    "Want more practice? Download the full worksheet as a PDF.",
    "Share this page with a classmate who is studying for the test.",
    "Next lesson: percentages and ratios.",
    "Questions about a solution? Leave a comment below.",
    "",
    "",
]


def math_worked_problems(rng: random.Random) -> str:
    n = rng.choice([1, 1, 1, 2, 2, 3])
    style = rng.randrange(4)
    blocks = [_problem_block(math_problem(rng), style, i + 1) for i in range(n)]
    parts = [pick(rng, MATH_INTROS), *blocks, pick(rng, MATH_OUTROS)]
    return "\n\n".join(p for p in parts if p)


MATH_TOPICS = {
    "fractions": [
        "A fraction names a part of a whole: the denominator says how many equal parts, the numerator how many we take.",
        "To add fractions with different denominators, first rewrite them over a common denominator.",
        "Equivalent fractions such as 1/2 and 3/6 describe the same amount.",
        "Multiplying fractions is easier than adding them: multiply the numerators and the denominators.",
        "A mixed number like 2 1/4 combines a whole number and a proper fraction.",
    ],
    "percentages": [
        "Percent means per hundred, so 35% is the same as 35/100 or 0.35.",
        "To find a percentage of an amount, multiply the amount by the percentage written as a decimal.",
        "A discount of 20% followed by another 10% is not the same as a 30% discount.",
        "Percentage change compares the difference with the original value.",
        "Interest rates, test scores and sales taxes are all usually given as percentages.",
    ],
    "rates": [
        "A rate compares two quantities with different units, such as kilometres per hour.",
        "Distance equals speed multiplied by time, as long as the speed stays constant.",
        "Unit rates make shopping comparisons easy: divide the price by the quantity.",
        "When two people work together, their rates of work add up.",
        "Converting units inside a rate problem is where most mistakes happen.",
    ],
    "algebra": [
        "A variable stands for a number we do not know yet.",
        "Solving an equation means finding the value that makes both sides equal.",
        "Whatever you do to one side of an equation, you must do to the other.",
        "Word problems become equations once you name the unknown quantity.",
        "Checking a solution by substituting it back is a habit worth building.",
    ],
}


def math_explainer(rng: random.Random) -> str:
    topic = pick(rng, list(MATH_TOPICS))
    title = pick(rng, [f"Understanding {topic}", f"A short guide to {topic}", f"{topic.title()} explained simply",
                       f"Why {topic} matter in everyday life"])
    body = sentence_pool(rng, MATH_TOPICS[topic], rng.randint(3, 5))
    extra = pick(rng, [
        "Teachers often introduce this idea with pictures before moving to numbers.",
        "Many students find it helpful to draw a diagram first.",
        "In the next chapter we will practise with real examples.",
        "This idea comes back again in secondary school algebra.",
    ])
    return f"{title}\n\n{body} {extra}"


# -- code Q&A threads ------------------------------------------------------------------------------------
CODE_TASKS = [
    ("How do I reverse a list in Python?", "python", "items = [1, 2, 3]\nreversed_items = items[::-1]\nprint(reversed_items)",
     "Slicing with a step of -1 returns a reversed copy. If you want to reverse in place, call items.reverse()."),
    ("How can I read a file line by line in Python?", "python",
     "with open('data.txt') as f:\n    for line in f:\n        print(line.rstrip())",
     "Iterating over the file object reads one line at a time, so memory stays small even for big files."),
    ("What is the fastest way to count words in a string?", "python",
     "from collections import Counter\ncounts = Counter(text.split())\nprint(counts.most_common(3))",
     "Counter does the counting in C, which is much faster than a manual dictionary loop."),
    ("How do I remove duplicates from an array in JavaScript?", "javascript",
     "const unique = [...new Set(values)];\nconsole.log(unique);",
     "A Set only keeps unique values, and spreading it back gives you an array in insertion order."),
    ("How to check if a key exists in a JavaScript object?", "javascript",
     "if (Object.hasOwn(config, 'timeout')) {\n  console.log(config.timeout);\n}",
     "Object.hasOwn is the modern replacement for hasOwnProperty and ignores the prototype chain."),
    ("How do I select rows where a column is null in SQL?", "sql",
     "SELECT *\nFROM orders\nWHERE shipped_at IS NULL;",
     "NULL is never equal to anything, so you need IS NULL instead of = NULL."),
    ("How can I join two tables and keep unmatched rows?", "sql",
     "SELECT c.name, o.total\nFROM customers c\nLEFT JOIN orders o ON o.customer_id = c.id;",
     "A LEFT JOIN keeps every customer, filling order columns with NULL when there is no match."),
    ("How do I loop over a map in Go?", "go",
     "for key, value := range ages {\n    fmt.Println(key, value)\n}",
     "range over a map yields key and value; note that the iteration order is random."),
    ("How to parse JSON into a struct in Go?", "go",
     "var cfg Config\nif err := json.Unmarshal(data, &cfg); err != nil {\n    log.Fatal(err)\n}",
     "Exported fields with json tags are filled in; unknown fields are ignored by default."),
    ("How do I find files larger than 100MB in bash?", "bash", "find . -type f -size +100M -exec ls -lh {} \\;",
     "find filters by size with +100M meaning more than 100 megabytes."),
    ("How can I rename many files at once in bash?", "bash",
     "for f in *.jpeg; do\n  mv -- \"$f\" \"${f%.jpeg}.jpg\"\ndone",
     "Parameter expansion strips the old suffix; quoting protects names with spaces."),
    ("How to sort a vector of structs in Rust?", "rust",
     "people.sort_by(|a, b| a.age.cmp(&b.age));",
     "sort_by takes a comparator closure; use sort_by_key when you only need one field."),
    ("How do I handle a missing value with Option in Rust?", "rust",
     "let port = config.port.unwrap_or(8080);",
     "unwrap_or supplies a default instead of panicking when the Option is None."),
    ("How do I merge two dictionaries in Python?", "python", "merged = {**defaults, **overrides}\n# or, in Python 3.9+\nmerged = defaults | overrides",
     "Later keys win, so overrides replaces values from defaults."),
    ("How can I time a function in Python?", "python",
     "import time\nstart = time.perf_counter()\nrun()\nprint(time.perf_counter() - start)",
     "perf_counter is a monotonic high resolution clock, better than time.time for measuring durations."),
    ("How to center a div with CSS?", "css", ".parent {\n  display: flex;\n  justify-content: center;\n  align-items: center;\n}",
     "Flexbox centers the child on both axes; grid with place-items: center works too."),
]
CODE_ASK_OPENERS = [
    "I'm new to {lang} and stuck on this.", "Probably a silly question, but", "I searched for an hour and found nothing clear.",
    "My code works but feels slow.", "Coming from another language, I expected this to be built in.", "",
]
CODE_ANSWER_TAILS = [
    "Hope this helps!", "This works on every recent version.", "See the official docs for more options.",
    "Edit: fixed a typo in the example.", "", "",
]


def code_qa_thread(rng: random.Random) -> str:
    title, lang, code, explanation = pick(rng, CODE_TASKS)  # type: ignore[arg-type]
    asker, answerer = rng.sample(FIRST_NAMES, 2)
    opener = pick(rng, CODE_ASK_OPENERS).format(lang=lang)
    votes = rng.randint(0, 950)
    layout = rng.randrange(3)
    if layout == 0:
        return (f"Question: {title}\nAsked by {asker.lower()}{rng.randint(1, 999)}\n\n{opener} {title}\n\n"
                f"Answer ({votes} votes) by {answerer}:\n```{lang}\n{code}\n```\n{explanation} {pick(rng, CODE_ANSWER_TAILS)}")
    if layout == 1:
        return (f"{title}\n{opener}\n\nAccepted answer\n{explanation}\n\n```{lang}\n{code}\n```\n\n"
                f"{rng.randint(1, 40)} comments - {pick(rng, CODE_ANSWER_TAILS)}")
    return (f"[{lang}] {title}\n\n{asker}: {opener or title}\n\n{answerer} replied:\n{explanation}\n\n    "
            + code.replace("\n", "\n    ") + f"\n\n{asker}: Thanks, that did it.")


# -- how-to ----------------------------------------------------------------------------------------------
HOWTO_TOPICS = {
    "repot a houseplant": ["Water the plant a day before", "Choose a pot 2-5 cm wider than the old one",
                           "Loosen the root ball gently", "Add fresh potting mix to the bottom",
                           "Set the plant at the same depth as before", "Water thoroughly and let it drain"],
    "bake sourdough bread": ["Feed your starter the night before", "Mix flour, water and starter",
                             "Rest the dough for 30 minutes", "Add salt and stretch and fold every half hour",
                             "Shape the loaf and proof it overnight in the fridge", "Bake in a preheated Dutch oven"],
    "fix a leaking tap": ["Turn off the water supply under the sink", "Remove the handle and the cartridge",
                          "Replace the worn washer or O-ring", "Reassemble the tap", "Turn the water back on slowly"],
    "change a bike tire": ["Shift to the smallest cog", "Open the brake and remove the wheel",
                           "Lever one side of the tire off the rim", "Swap the inner tube",
                           "Seat the tire bead and inflate to the pressure on the sidewall"],
    "set up a home wifi network": ["Place the router centrally", "Connect it to the modem",
                                   "Log in to the admin page", "Change the default password",
                                   "Pick WPA3 security", "Name the network and reconnect your devices"],
    "paint a room": ["Move furniture and cover the floor", "Fill holes and sand the walls", "Tape the edges",
                     "Apply primer", "Cut in along the corners", "Roll two thin coats"],
    "start a compost pile": ["Pick a shady spot", "Layer brown and green material", "Keep it as damp as a sponge",
                             "Turn the pile every two weeks", "Harvest the dark crumbly compost after a few months"],
    "clean a cast iron pan": ["Rinse while warm", "Scrub with coarse salt", "Dry completely on the stove",
                              "Rub in a thin layer of oil", "Heat until it just smokes"],
}
HOWTO_TITLES = ["How to {t}", "How to {t} (step by step)", "The easy way to {t}", "{T} in {n} simple steps",
                "Beginner's guide: how to {t}"]
HOWTO_TIPS = ["Tip: take your time on the first step.", "You will need about an hour.",
              "Most of the tools are probably already in your home.", "Safety first: wear gloves.",
              "Photos of each step are in the gallery below.", "Updated for this year with reader suggestions."]


def howto_list(rng: random.Random) -> str:
    topic = pick(rng, list(HOWTO_TOPICS))
    steps = HOWTO_TOPICS[topic]
    title = pick(rng, HOWTO_TITLES).format(t=topic, T=topic.capitalize(), n=len(steps))
    marker = rng.randrange(3)
    lines = [(f"{i + 1}. " if marker == 0 else "- " if marker == 1 else f"Step {i + 1}: ") + s + "."
             for i, s in enumerate(steps)]
    return f"{title}\n\n{sentence_pool(rng, HOWTO_TIPS, 2)}\n\n" + "\n".join(lines) + f"\n\n{pick(rng, HOWTO_TIPS)}"


# -- FAQ -------------------------------------------------------------------------------------------------
FAQ_ENTRIES = [
    ("What is your return policy?", "You can return any unused item within 30 days for a full refund."),
    ("How long does shipping take?", "Standard shipping takes 3 to 5 business days; express arrives the next day."),
    ("Do you ship internationally?", "Yes, we ship to over 40 countries. Duties are calculated at checkout."),
    ("How do I reset my password?", "Click 'Forgot password' on the login page and follow the link we email you."),
    ("Can I change my order after placing it?", "Orders can be changed within one hour by contacting support."),
    ("Which payment methods do you accept?", "We accept credit cards, PayPal and bank transfer."),
    ("Is my personal data safe?", "We never sell your data and store it encrypted on servers in the EU."),
    ("How do I cancel my subscription?", "Go to Account, then Billing, and choose Cancel subscription."),
    ("Do you offer student discounts?", "Students get 15% off with a valid university email address."),
    ("What are your opening hours?", "Our support team answers Monday to Friday, 9:00 to 17:00."),
    ("Where can I find my invoice?", "Invoices are attached to the confirmation email and stored in your account."),
    ("Can I use the app offline?", "Most features work offline; changes sync when you reconnect."),
]


def faq_page(rng: random.Random) -> str:
    company = pick(rng, ["Brightline", "Nordic Home", "CloudNote", "Peak Outdoors", "Sunny Pets", "Urban Bikes"])
    entries = rng.sample(FAQ_ENTRIES, rng.randint(3, 6))
    style = rng.randrange(3)
    if style == 0:
        body = "\n\n".join(f"Q: {q}\nA: {a}" for q, a in entries)
    elif style == 1:
        body = "\n\n".join(f"### {q}\n{a}" for q, a in entries)
    else:
        body = "\n\n".join(f"{q}\n{a}" for q, a in entries)
    return f"{company} - Frequently Asked Questions\n\n{body}\n\nStill need help? Contact {company.lower().replace(' ', '')}@support.example."


# -- encyclopedia ----------------------------------------------------------------------------------------
ENCYCLOPEDIA_SUBJECTS = [
    ("river", ["flows for {n} kilometres before reaching the sea", "was an important trade route in the middle ages",
               "is home to more than {m} species of fish", "floods its valley most springs"]),
    ("mountain", ["rises {n} metres above sea level", "was first climbed in {y}",
                  "is covered by glaciers on its northern face", "gives its name to the surrounding national park"]),
    ("bird", ["migrates about {n} kilometres each year", "builds its nest from moss and feathers",
              "was described by naturalists in {y}", "feeds mostly on insects and seeds"]),
    ("scientist", ["was born in {y}", "published {m} papers on optics and heat", "taught at the university for {m} years",
                   "is remembered for careful experimental work"]),
    ("city", ["has about {n} thousand inhabitants", "received its charter in {y}",
              "is known for its old harbour and markets", "hosts a music festival every summer"]),
    ("language", ["is spoken by about {m} million people", "has a written record going back to {y}",
                  "uses a Latin-based alphabet", "borrowed many words from its neighbours"]),
]
NAME_PARTS = ["Al", "Ber", "Cor", "Dan", "El", "Fen", "Gal", "Hal", "Is", "Jor", "Kal", "Lun", "Mor", "Nor", "Ost"]
NAME_ENDS = ["ia", "an", "eth", "os", "ur", "ina", "ov", "el", "ard", "ix"]


def encyclopedia_article(rng: random.Random) -> str:
    kind, facts = ENCYCLOPEDIA_SUBJECTS[rng.randrange(len(ENCYCLOPEDIA_SUBJECTS))]
    name = pick(rng, NAME_PARTS) + pick(rng, NAME_ENDS)
    chosen = rng.sample(facts, rng.randint(2, 4))
    values = {"n": rng.randint(50, 5000), "m": rng.randint(3, 90), "y": rng.randint(1500, 1990)}
    sentences = [f"The {name} {kind} " + chosen[0].format(**values) + "."]
    sentences += [pick(rng, ["It", "The " + kind, name]) + " " + f.format(**values) + "." for f in chosen[1:]]
    heading = pick(rng, [name, f"{name} ({kind})", f"{name} - overview"])
    see_also = pick(rng, ["", f"\n\nSee also: list of {kind}s.", "\n\nReferences\n1. Regional survey, vol. 3."])
    return f"{heading}\n\n" + " ".join(sentences) + see_also


# -- news ------------------------------------------------------------------------------------------------
NEWS_EVENTS = [
    ("council approves new bike lanes", ["The vote passed {a} to {b}.", "Construction starts next spring.",
                                         "Local shop owners were divided on the plan."]),
    ("storm closes schools", ["Winds reached {a} km/h overnight.", "Power was cut to {b} homes.",
                              "Officials expect classes to resume on Monday."]),
    ("local team wins regional final", ["The score was {a}-{b}.", "Fans celebrated in the main square.",
                                        "The coach praised the defence."]),
    ("new library opens downtown", ["The building holds {a} thousand books.", "Entry is free for residents.",
                                    "The project cost {b} million."]),
    ("startup raises funding", ["The company raised {a} million in its first round.", "It employs {b} people.",
                                "The founders plan to expand abroad."]),
    ("museum returns artefacts", ["{a} objects will be sent back.", "The agreement took {b} years to reach.",
                                  "A ceremony is planned for the autumn."]),
]


def news_article(rng: random.Random) -> str:
    event, lines = NEWS_EVENTS[rng.randrange(len(NEWS_EVENTS))]
    city = pick(rng, CITIES)
    values = {"a": rng.randint(2, 120), "b": rng.randint(1, 60)}
    date = f"{rng.randint(1, 28)} {pick(rng, ['March', 'June', 'September', 'November'])} 2026"
    body = " ".join(line.format(**values) for line in rng.sample(lines, len(lines)))
    quote = f'"{pick(rng, ["This is a big day for us", "We listened to residents", "It was a difficult decision", "We are proud of everyone involved"])}," said {pick(rng, FIRST_NAMES)} {pick(rng, NAME_PARTS)}{pick(rng, NAME_ENDS)}.'
    headline = pick(rng, [f"{city}: {event}", f"{event.capitalize()} in {city}", f"{city} {event}"])
    return f"{headline}\n{date} | {pick(rng, ['Staff reporter', 'Newsdesk', 'Wire report'])}\n\n{body} {quote}\n\nRead more local news."


# -- shop pages ------------------------------------------------------------------------------------------
PRODUCTS = [("wireless headphones", "Electronics"), ("trail running shoes", "Sports"), ("ceramic mug set", "Kitchen"),
            ("LED desk lamp", "Home office"), ("yoga mat", "Sports"), ("espresso machine", "Kitchen"),
            ("backpack 30L", "Outdoor"), ("mechanical keyboard", "Electronics"), ("linen bed sheets", "Home"),
            ("cordless drill", "Tools")]


def shop_page(rng: random.Random) -> str:
    product, category = PRODUCTS[rng.randrange(len(PRODUCTS))]
    brand = pick(rng, ["Acme", "Nordik", "Volt", "Pureform", "Tidewell", "Kestrel"])
    price = rng.randint(9, 399) + rng.choice([0.99, 0.49, 0.0])
    specs = rng.sample(["Free delivery over 50", "2-year warranty", "In stock", "Ships in 24h",
                        f"Colour: {pick(rng, ['black', 'white', 'sage', 'navy'])}", f"Weight: {rng.randint(1, 30) * 100} g"], 3)
    reviews = rng.randint(0, 3000)
    return (f"{category} > {brand} {product}\n\n{brand} {product.title()}\n${price:.2f}\n"
            f"{'★' * rng.randint(3, 5)} ({reviews} reviews)\n\n" + "\n".join(specs)
            + f"\n\nAdd to cart | Add to wishlist\n\nCustomers also bought: {pick(rng, PRODUCTS)[0]}, {pick(rng, PRODUCTS)[0]}")


# -- boilerplate, forum chatter, other languages ---------------------------------------------------------
BOILERPLATE = [
    "We use cookies to improve your experience. By continuing to browse you agree to our use of cookies. Accept all | Reject | Settings",
    "Home | About | Products | Blog | Contact\nSign in | Register\n© 2026 All rights reserved. Privacy policy | Terms of use",
    "This site uses cookies and similar technologies for analytics and advertising. Manage preferences.",
    "Skip to main content\nMenu\nSearch\nLog in\nCart (0)",
    "Page not found. The page you are looking for might have been removed or is temporarily unavailable. Go back home.",
    "Subscribe to our newsletter! Enter your email address to get the latest deals. No spam, unsubscribe anytime.",
    "Please enable JavaScript to view this website properly.",
    "Follow us on social media\nFacebook | Instagram | YouTube\nSitemap | Accessibility | Cookie settings",
]


def boilerplate_page(rng: random.Random) -> str:
    parts = rng.sample(BOILERPLATE, rng.randint(1, 3))
    return "\n\n".join(parts) + (f"\n\nLast updated {rng.randint(1, 28)}/{rng.randint(1, 12)}/2026" if rng.random() < 0.5 else "")


FORUM_LINES = [
    "lol same here", "anyone else having this problem since the update??", "bump", "+1, following this thread",
    "I tried that and it didn't work for me", "thanks mate, legend", "not sure what you mean tbh",
    "this forum is getting slow again", "has anyone been to the meetup last week?", "off topic but nice avatar",
    "my cat just knocked my coffee over, brb", "I think the mods should pin this", "sorry for the late reply",
    "that's what she said", "ok update: still broken", "can confirm, happens on mine too",
    "does anyone know a good mechanic near the station", "weather is crazy today",
]


def forum_chatter(rng: random.Random) -> str:
    users = rng.sample(FIRST_NAMES, 3)
    lines = [f"{pick(rng, users).lower()}{rng.randint(1, 99)}: {line}" for line in rng.sample(FORUM_LINES, rng.randint(3, 7))]
    title = pick(rng, ["Re: general chat", "Re: random thoughts thread", "Off-topic lounge", "Re: weekend plans",
                       "Re: update broke my setup"])
    return f"{title}\n\n" + "\n".join(lines) + f"\n\nPage {rng.randint(1, 40)} of {rng.randint(40, 90)}"


NON_ENGLISH = {
    "de": ["Die Stadt liegt am Ufer eines großen Sees.", "Im Sommer kommen viele Touristen.",
           "Das Museum ist montags geschlossen.", "Die Bäckerei verkauft frisches Brot ab sechs Uhr.",
           "Der Zug fährt stündlich nach Berlin.", "Bitte melden Sie sich für den Newsletter an."],
    "fr": ["La bibliothèque ouvre à neuf heures.", "Le marché du samedi est très animé.",
           "Nous livrons dans toute la France.", "Le musée présente une nouvelle exposition.",
           "La recette demande trois œufs et du beurre.", "Les inscriptions sont ouvertes jusqu'à vendredi."],
    "es": ["El parque cierra a las ocho de la tarde.", "La tienda ofrece envío gratuito.",
           "El equipo ganó el partido del domingo.", "La receta lleva tomate, ajo y aceite de oliva.",
           "El tren sale cada media hora.", "Las clases empiezan en septiembre."],
    "pt": ["A praia fica a dez minutos do centro.", "O restaurante abre ao meio-dia.",
           "Os bilhetes estão à venda online.", "A exposição termina no fim do mês.",
           "O autocarro passa de hora a hora.", "A loja tem novos produtos esta semana."],
}


def non_english_page(rng: random.Random) -> tuple[str, str]:
    lang = pick(rng, list(NON_ENGLISH))
    return lang, sentence_pool(rng, NON_ENGLISH[lang], rng.randint(3, 5))


def near_duplicate(rng: random.Random, text: str) -> str:
    """A copy of ``text`` with a small change: a different footer, a header, or one word swapped."""
    change = rng.randrange(3)
    if change == 0:
        return text + "\n\n" + pick(rng, ["Share this page.", "Printed from the web archive.", "Posted in: misc",
                                          "Comments are closed."])
    if change == 1:
        return pick(rng, ["Mirror copy", "Archived page", "Reposted", "Cached version"]) + "\n\n" + text
    words = text.split(" ")
    i = rng.randrange(len(words))
    words[i] = words[i].upper()
    return " ".join(words)


# -- kinds of the selection suite (demo/suite.py): more forms of math, topical pages without pairs, many pairs
# far from a math goal ----------------------------------------------------------------------------------
MATH_THREAD_OPENERS = [
    "Can someone check my working on this one?", "Stuck on my homework, any help appreciated.",
    "My kid brought this home and I can't remember how to do it.", "The book's answer doesn't match mine.",
    "How do you even start this kind of problem?", "",
]


def math_thread(rng: random.Random) -> str:
    """A forum question about one math word problem, answered with the working (relevant to a math goal)."""
    p = math_problem(rng)
    asker, answerer = rng.sample(FIRST_NAMES, 2)
    opener = pick(rng, MATH_THREAD_OPENERS)
    steps = " ".join(p.steps)
    votes = rng.randint(0, 300)
    layout = rng.randrange(3)
    if layout == 0:
        return (f"Question: {p.question}\nAsked by {asker.lower()}{rng.randint(1, 999)}\n\n{opener}\n\n"
                f"Answer ({votes} votes) by {answerer}:\n{steps} So the answer is {p.answer}.\n\n"
                f"{rng.randint(0, 12)} comments")
    if layout == 1:
        return (f"{p.question}\n{opener}\n\nAccepted answer\n{steps} The answer is {p.answer}.\n\n"
                f"{pick(rng, ['Thanks, makes sense now!', 'Marked as solved.', 'Great explanation.', ''])}")
    return (f"Q: {p.question}\n{asker}, grade {rng.randint(3, 7)}\n\n{answerer} replied:\n{steps} "
            f"That gives {p.answer}.\n\n{asker}: {pick(rng, ['Got it, thank you!', 'Oh I see my mistake now.', 'Thanks!'])}")


MATH_CHATTER_LINES = [
    "i hate word problems so much", "does anyone have the answers for page {n}", "our teacher gave us {n} problems for tomorrow",
    "i got {n} but the book says something else", "fractions are the worst lol", "who else is doing the worksheet at midnight",
    "my mom tried to help and made it worse", "is the test on chapter {n} or {m}", "just guess and check tbh",
    "i asked the tutor and she said to draw it", "still don't get percentages", "this unit is so boring",
]


def math_chatter(rng: random.Random) -> str:
    """Homework chatter around a math problem, with no answer given: on topic for a math goal, but no pairs."""
    users = rng.sample(FIRST_NAMES, 3)
    p = math_problem(rng)
    values = {"n": rng.randint(2, 90), "m": rng.randint(2, 12)}
    lines = [f"{users[0].lower()}{rng.randint(1, 99)}: can someone help with this one. {p.question} "
             f"{pick(rng, ['i keep getting a weird number', 'no idea where to start', 'due tomorrow morning'])}"]
    lines += [f"{pick(rng, users).lower()}{rng.randint(1, 99)}: " + line.format(**values)
              for line in rng.sample(MATH_CHATTER_LINES, rng.randint(2, 5))]
    title = pick(rng, ["Re: homework help", "Re: math homework thread", "Re: stuck on worksheet", "Re: test tomorrow"])
    return f"{title}\n\n" + "\n".join(lines) + f"\n\nPage {rng.randint(1, 30)} of {rng.randint(30, 60)}"


MATH_NEWS_EVENTS = [
    "math scores rise at local schools", "district hires more math tutors", "students win regional math olympiad",
    "new math curriculum divides parents", "free math club opens at the library", "calculator ban in exams debated",
]


def math_news(rng: random.Random) -> str:
    """News about math education: on topic for a math goal, but no question/answer pairs."""
    city = pick(rng, CITIES)
    event = pick(rng, MATH_NEWS_EVENTS)
    a, b = rng.randint(30, 70), rng.randint(2, 25)
    body = " ".join(rng.sample([
        f"The share of grade {rng.randint(3, 8)} pupils passing the state math test rose to {a} percent.",
        f"Teachers say {b} extra hours of practice a month made the difference.",
        "Parents were invited to an evening on how fractions and percentages are now taught.",
        f"The program will cost about {b} thousand a year.",
        "Officials will publish the full results in the spring.",
    ], 3))
    quote = f'"{pick(rng, ["Numbers matter", "We want every child to enjoy math", "The results speak for themselves"])}," said {pick(rng, FIRST_NAMES)} {pick(rng, NAME_PARTS)}{pick(rng, NAME_ENDS)}.'
    return f"{city}: {event}\n{rng.randint(1, 28)} May 2026 | Education desk\n\n{body} {quote}"


TRIVIA = [
    ("Which planet is known as the Red Planet?", "Mars"), ("What is the largest ocean on Earth?", "The Pacific Ocean"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci"), ("What gas do plants take in from the air?", "Carbon dioxide"),
    ("Which country hosted the first modern Olympic Games?", "Greece"), ("What is the capital of Canada?", "Ottawa"),
    ("How many players are on a football team on the pitch?", "Eleven"), ("What is the hardest natural substance?", "Diamond"),
    ("Which instrument has 88 keys?", "The piano"), ("What is the longest river in Africa?", "The Nile"),
    ("Who wrote Romeo and Juliet?", "William Shakespeare"), ("What is the chemical symbol for gold?", "Au"),
    ("Which animal is the tallest in the world?", "The giraffe"), ("In which continent is the Sahara desert?", "Africa"),
    ("What is the main language spoken in Brazil?", "Portuguese"), ("Which bird is a symbol of peace?", "The dove"),
    ("What do bees make?", "Honey"), ("Which city is home to the Colosseum?", "Rome"),
    ("What is frozen water called?", "Ice"), ("Which sport uses a shuttlecock?", "Badminton"),
    ("What is the capital of Japan?", "Tokyo"), ("Who discovered penicillin?", "Alexander Fleming"),
    ("Which organ pumps blood through the body?", "The heart"), ("What colour are the stars on the US flag?", "White"),
    ("Which metal is liquid at room temperature?", "Mercury"), ("What is the smallest continent?", "Australia"),
    ("Which composer wrote the Four Seasons?", "Antonio Vivaldi"), ("What is the national animal of Scotland?", "The unicorn"),
    ("Which festival is known as the festival of lights?", "Diwali"), ("What is the capital of Kenya?", "Nairobi"),
    ("Which famous ship sank in 1912?", "The Titanic"), ("What is a baby kangaroo called?", "A joey"),
]


def trivia_quiz(rng: random.Random) -> str:
    """A pub quiz: many Q:/A: pairs of general knowledge, far from a math goal."""
    entries = rng.sample(TRIVIA, rng.randint(6, 12))
    title = pick(rng, ["Pub quiz night: round {n}", "General knowledge quiz #{n}", "Family trivia, set {n}",
                       "Friday quiz - answers inside (round {n})"]).format(n=rng.randint(1, 40))
    return f"{title}\n\n" + "\n\n".join(f"Q: {q}\nA: {a}." for q, a in entries) + "\n\nScore yourself: one point each."
