"""A small generative English grammar for the synthesized mini corpus.

Sentences are upper case with apostrophes only (LibriSpeech's alphabet: A-Z, ``'``, space), built
from about six hundred words arranged in storybook clauses: subject, verb, object, places, times,
subordinate clauses, negations and possessives.  The structure is regular enough that a 4-gram LM
lowers the word error rate of a weak acoustic model, and the vocabulary is large enough that it has
to (a uniform guess over the words is hopeless).

Everything is a pure function of a :class:`random.Random`, so a seed fixes every sentence on every
Python version (``random.Random`` with a ``str`` seed, ``choice`` and ``random`` are stable).
"""

from __future__ import annotations

import random

NAMES = """JOHN MARY THOMAS ELIZABETH HENRY MARGARET WILLIAM ANNE ROBERT CATHERINE GEORGE ALICE EDWARD
HELEN ARTHUR SARAH CHARLES EMMA FRANCIS LUCY PETER JANE RICHARD DOROTHY WALTER MARTHA HUGH ROSE
PHILIP CLARA DAVID NANCY SAMUEL EDITH""".split()

PERSONS = """MAN WOMAN BOY GIRL CHILD KING QUEEN CAPTAIN DOCTOR FARMER SOLDIER SAILOR PRIEST MERCHANT
STRANGER FRIEND MOTHER FATHER SISTER BROTHER SERVANT LADY GENTLEMAN NEIGHBOUR HUNTER TEACHER
STUDENT BAKER PRINCE JUDGE GUARD FISHERMAN SHEPHERD WIDOW KNIGHT MINER""".split()

THINGS = """BOOK LETTER KEY BOX HORSE DOG CAT BIRD SHIP BOAT CART STONE TREE FLOWER CANDLE LAMP SWORD
COAT HAT RING BASKET LOAF APPLE CUP BOTTLE ROPE BELL CLOCK MAP PICTURE CHAIR TABLE WINDOW DOOR
WAGON BLANKET NEWSPAPER PURSE COIN LANTERN FEATHER PEN GLASS SHOE GLOVE PARCEL BUCKET HAMMER
NEEDLE PLATE SPOON BRUSH PIPE STICK SHEEP GOAT COW PIG HEN FOX WOLF""".split()

PLACES = """RIVER FOREST HOUSE GARDEN VILLAGE TOWN CASTLE CHURCH MARKET HARBOUR FIELD HILL VALLEY ROAD
STREET KITCHEN LIBRARY STATION ISLAND MOUNTAIN SHORE BRIDGE CELLAR TOWER FARM MILL INN SCHOOL
PALACE CHAPEL MEADOW LAKE CAVE PRISON HOSPITAL SHOP CITY CORNER GATE YARD""".split()

ADJECTIVES = """OLD YOUNG SMALL LARGE GREAT LITTLE DARK BRIGHT COLD WARM QUIET NOISY HEAVY LIGHT STRANGE
FAMOUS POOR RICH HAPPY SAD ANGRY GENTLE BRAVE CLEVER FOOLISH TIRED HUNGRY BEAUTIFUL UGLY GOLDEN
SILVER WOODEN BROKEN EMPTY FULL NARROW WIDE DEEP ANCIENT HONEST PROUD SILENT WILD SOFT HARD RED
GREEN BLUE WHITE BLACK GREY BROWN YELLOW DISTANT SECRET HIDDEN LONELY CAREFUL CHEERFUL KIND
CRUEL WISE CURIOUS FRIENDLY SHY""".split()

# (base form, past tense): the base form serves negations and modal verbs.
TRANSITIVE = [tuple(p.split("/")) for p in """SEE/SAW FIND/FOUND TAKE/TOOK BRING/BROUGHT CARRY/CARRIED
OPEN/OPENED CLOSE/CLOSED HOLD/HELD BUY/BOUGHT SELL/SOLD WATCH/WATCHED FOLLOW/FOLLOWED CALL/CALLED
MEET/MET HELP/HELPED LEAVE/LEFT KEEP/KEPT LOSE/LOST DROP/DROPPED LIFT/LIFTED PAINT/PAINTED
PUSH/PUSHED PULL/PULLED CATCH/CAUGHT MISS/MISSED REMEMBER/REMEMBERED FORGET/FORGOT SHOW/SHOWED
ASK/ASKED ANSWER/ANSWERED THANK/THANKED VISIT/VISITED CLEAN/CLEANED FIX/FIXED HIDE/HID COUNT/COUNTED
TOUCH/TOUCHED NOTICE/NOTICED WASH/WASHED FEED/FED GUARD/GUARDED CHASE/CHASED STUDY/STUDIED
ADMIRE/ADMIRED BURY/BURIED MEND/MENDED SEARCH/SEARCHED WRAP/WRAPPED""".split()]

DITRANSITIVE = [tuple(p.split("/")) for p in """GIVE/GAVE SEND/SENT HAND/HANDED OFFER/OFFERED
LEND/LENT SELL/SOLD SHOW/SHOWED PROMISE/PROMISED""".split()]

INTRANSITIVE = [tuple(p.split("/")) for p in """SLEEP/SLEPT LAUGH/LAUGHED SMILE/SMILED WAIT/WAITED
CRY/CRIED SING/SANG DANCE/DANCED SHOUT/SHOUTED WHISPER/WHISPERED LISTEN/LISTENED TREMBLE/TREMBLED
HESITATE/HESITATED PAUSE/PAUSED SIGH/SIGHED NOD/NODDED ARRIVE/ARRIVED RETURN/RETURNED FALL/FELL
SIT/SAT STAND/STOOD REST/RESTED PRAY/PRAYED WORK/WORKED COUGH/COUGHED WEEP/WEPT""".split()]

MOTION = [tuple(p.split("/")) for p in """WALK/WALKED RUN/RAN RIDE/RODE HURRY/HURRIED WANDER/WANDERED
CLIMB/CLIMBED SAIL/SAILED DRIFT/DRIFTED CRAWL/CRAWLED MARCH/MARCHED TRAVEL/TRAVELLED RUSH/RUSHED
GO/WENT COME/CAME""".split()]

SAYING = """SAID THOUGHT KNEW BELIEVED FEARED HOPED FELT DECLARED REPLIED EXPLAINED WROTE HEARD
SUSPECTED""".split()

ADVERBS = """SLOWLY QUICKLY QUIETLY SUDDENLY CAREFULLY GENTLY LOUDLY SOFTLY SADLY HAPPILY ANGRILY
PATIENTLY BRAVELY NERVOUSLY EAGERLY CALMLY PROUDLY SILENTLY ALWAYS OFTEN NEVER SOMETIMES AGAIN
FINALLY""".split()

FREQUENT_ADVERBS = """ALWAYS OFTEN NEVER SOMETIMES""".split()

TIMES = ["YESTERDAY", "TODAY", "AFTERWARDS", "LATER", "SOON", "AT NIGHT", "AT DAWN", "AT NOON",
         "IN THE MORNING", "IN THE EVENING", "IN THE AFTERNOON", "THAT NIGHT", "THE NEXT DAY",
         "LAST WEEK", "LONG AGO", "AT LAST"]
DAYS = "MONDAY TUESDAY WEDNESDAY THURSDAY FRIDAY SATURDAY SUNDAY".split()
MONTHS = """JANUARY FEBRUARY MARCH APRIL MAY JUNE JULY AUGUST SEPTEMBER OCTOBER NOVEMBER
DECEMBER""".split()
SEASONS = "SPRING SUMMER AUTUMN WINTER".split()

MOTION_PREPOSITIONS = "TO TOWARD INTO ACROSS THROUGH ALONG PAST AROUND UP DOWN".split()
PLACE_PREPOSITIONS = "IN NEAR BEHIND BESIDE UNDER ABOVE INSIDE OUTSIDE BEYOND AT".split()

DETERMINERS = "THE THE THE A THIS THAT EVERY SOME ANOTHER HIS HER THEIR OUR MY YOUR".split()
NUMBERS = "TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN TWELVE TWENTY FORTY".split()
SUBJECT_PRONOUNS = "HE SHE THEY WE I YOU".split()
OBJECT_PRONOUNS = "HIM HER THEM US ME YOU IT".split()
SUBORDINATORS = "BECAUSE WHILE ALTHOUGH WHEN BEFORE AFTER UNTIL SINCE".split()
MODALS = ["COULD", "WOULD", "SHOULD", "MIGHT", "MUST", "WILL", "CAN", "DIDN'T", "COULDN'T",
          "WOULDN'T", "WON'T", "CAN'T", "DID NOT", "WOULD NOT"]
OPENERS = ["AND SO", "BUT", "THEN", "OF COURSE", "PERHAPS", "INDEED", "NOW", "ONCE MORE"]

_IRREGULAR_PLURALS = {"MAN": "MEN", "WOMAN": "WOMEN", "CHILD": "CHILDREN", "GENTLEMAN": "GENTLEMEN",
                      "FISHERMAN": "FISHERMEN", "SHEEP": "SHEEP", "WOLF": "WOLVES", "LOAF": "LOAVES",
                      "KNIFE": "KNIVES", "WIDOW": "WIDOWS", "MINER": "MINERS"}


def plural(noun: str) -> str:
    """English plural of one of the grammar's nouns."""
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith(("S", "SH", "CH", "X")):
        return noun + "ES"
    if noun.endswith("Y") and noun[-2] not in "AEIOU":
        return noun[:-1] + "IES"
    return noun + "S"


def vocabulary() -> set[str]:
    """Every word the grammar can produce (used by tests and to size the LM's task)."""
    words: set[str] = set()
    lists = [NAMES, PERSONS, THINGS, PLACES, ADJECTIVES, SAYING, ADVERBS, DAYS, MONTHS, SEASONS,
             MOTION_PREPOSITIONS, PLACE_PREPOSITIONS, DETERMINERS, NUMBERS, SUBJECT_PRONOUNS,
             OBJECT_PRONOUNS, SUBORDINATORS, TIMES, MODALS, OPENERS]
    for group in lists:
        for item in group:
            words.update(item.split())
    for noun in PERSONS + THINGS:
        words.add(plural(noun))
        words.add(noun + "'S")
    for name in NAMES:
        words.add(name + "'S")
    for table in (TRANSITIVE, DITRANSITIVE, INTRANSITIVE, MOTION):
        for base, past in table:
            words.update((base, past))
    words.update("THE A OF AND THAT WITH ON WAS WERE VERY TOO ALL ALONE IT".split())
    return words


class Grammar:
    """Sentence generator; ``sentence()`` draws one sentence from ``rng``.

    The clause probabilities are fixed constants: changing them changes every synthesized corpus,
    so treat them as part of the corpus definition (the mini corpus manifest records its version).
    """

    def __init__(self, rng: random.Random):
        self.rng = rng

    def _pick(self, items):
        return self.rng.choice(items)

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def noun_phrase(self, kind: str = "any", subject: bool = False) -> str:
        r = self.rng.random()
        if kind == "any":
            kind = "person" if r < 0.55 else "thing"
            r = self.rng.random()
        nouns = PERSONS if kind == "person" else THINGS
        if kind == "person" and r < 0.22:
            return self._pick(NAMES)
        if r < 0.34:
            return self._pick(SUBJECT_PRONOUNS if subject else OBJECT_PRONOUNS)
        if r < 0.42:
            return f"{self._pick(NUMBERS)} {self._adjective_opt(0.4)}{plural(self._pick(nouns))}"
        if r < 0.50:
            owner = self._pick(NAMES) if self._chance(0.5) else f"THE {self._pick(PERSONS)}"
            adjective = self._adjective_opt(0.3)
            owned = self._pick(THINGS if self._chance(0.7) else PERSONS)
            return f"{owner}'S {adjective}{owned}"
        det = self._pick(DETERMINERS)
        noun = self._pick(nouns)
        if det == "A" and self._chance(0.6):
            # "a" only before a consonant-initial adjective or noun keeps the text natural.
            adj = self._pick([a for a in ADJECTIVES if a[0] not in "AEIOU"])
            phrase = f"A {adj} {noun}"
        elif det == "A":
            det = "THE"
            phrase = f"THE {self._adjective_opt(0.45)}{noun}"
        else:
            phrase = f"{det} {self._adjective_opt(0.45)}{noun}"
        if self._chance(0.12):
            phrase += f" OF THE {self._pick(PLACES)}"
        elif self._chance(0.08):
            phrase += f" WITH THE {self._adjective_opt(0.4)}{self._pick(THINGS)}"
        return phrase

    def _adjective_opt(self, p: float) -> str:
        if not self._chance(p):
            return ""
        if self._chance(0.12):
            return f"VERY {self._pick(ADJECTIVES)} "
        return f"{self._pick(ADJECTIVES)} "

    def place_phrase(self, motion: bool) -> str:
        prep = self._pick(MOTION_PREPOSITIONS if motion else PLACE_PREPOSITIONS)
        det = "THE" if self._chance(0.75) else self._pick(["HIS", "HER", "THEIR", "OUR", "A"])
        if det == "A":
            adj = self._pick([a for a in ADJECTIVES if a[0] not in "AEIOU"])
            return f"{prep} A {adj} {self._pick(PLACES)}"
        return f"{prep} {det} {self._adjective_opt(0.35)}{self._pick(PLACES)}"

    def time_phrase(self) -> str:
        r = self.rng.random()
        if r < 0.55:
            return self._pick(TIMES)
        if r < 0.75:
            return f"ON {self._pick(DAYS)}"
        if r < 0.9:
            return f"IN {self._pick(MONTHS)}"
        return f"IN THE {self._pick(SEASONS)}"

    def verb_phrase(self) -> str:
        r = self.rng.random()
        if r < 0.38:
            base, past = self._pick(TRANSITIVE)
            vp = f"{past} {self.noun_phrase()}"
        elif r < 0.48:
            base, past = self._pick(DITRANSITIVE)
            vp = f"{past} {self.noun_phrase('person')} {self.noun_phrase('thing')}"
        elif r < 0.64:
            base, past = self._pick(INTRANSITIVE)
            vp = past
        elif r < 0.82:
            base, past = self._pick(MOTION)
            vp = f"{past} {self.place_phrase(motion=True)}"
        elif r < 0.92:
            modal = self._pick(MODALS)
            base, _ = self._pick(TRANSITIVE)
            vp = f"{modal} {base} {self.noun_phrase()}"
        else:
            adj = self._pick(ADJECTIVES)
            vp = f"{'WAS' if self._chance(0.6) else 'WERE'} {'VERY ' if self._chance(0.2) else ''}{adj}"
        if self._chance(0.25):
            if self._chance(0.3):
                vp = f"{self._pick(FREQUENT_ADVERBS)} {vp}"
            else:
                vp = f"{vp} {self._pick(ADVERBS)}"
        if self._chance(0.22):
            vp += f" {self.place_phrase(motion=False)}"
        return vp

    def clause(self) -> str:
        return f"{self.noun_phrase(subject=True)} {self.verb_phrase()}"

    def sentence(self) -> str:
        """One sentence of roughly 4 to 25 words."""
        r = self.rng.random()
        if r < 0.40:
            s = self.clause()
        elif r < 0.55:
            s = f"{self.clause()} AND {self.verb_phrase()}"
        elif r < 0.70:
            s = f"{self.clause()} {self._pick(SUBORDINATORS)} {self.clause()}"
        elif r < 0.80:
            s = f"{self._pick(SUBORDINATORS)} {self.clause()} {self.clause()}"
        elif r < 0.90:
            s = f"{self.noun_phrase('person', subject=True)} {self._pick(SAYING)} THAT {self.clause()}"
        else:
            s = f"{self.clause()} BUT {self.clause()}"
        if self._chance(0.18):
            s = f"{self.time_phrase()} {s}" if self._chance(0.5) else f"{s} {self.time_phrase()}"
        if self._chance(0.08):
            s = f"{self._pick(OPENERS)} {s}"
        return s


def sentences(rng: random.Random, count: int, *, exclude: set[str] | frozenset[str] = frozenset(),
              min_words: int = 4, max_words: int = 24) -> list[str]:
    """``count`` distinct sentences of ``min_words``..``max_words`` words, none in ``exclude``."""
    grammar = Grammar(rng)
    out: list[str] = []
    seen: set[str] = set(exclude)
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError("the mini grammar cannot produce that many distinct sentences")
        s = grammar.sentence()
        n = s.count(" ") + 1
        if n < min_words or n > max_words or s in seen:
            continue
        seen.add(s)
        out.append(s)
    return out
