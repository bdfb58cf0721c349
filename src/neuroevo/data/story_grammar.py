"""A seeded generator of short children's stories: the offline stand-in for TinyStories.

TinyStories cannot be fetched without internet (see `data/README.md`), yet the CPU quick start and
the tests need English text that a tiny language model can actually learn from. Uniform random words
would give it nothing to learn, so this is a small probabilistic grammar in the spirit of TinyStories:
each story casts a hero (a name whose pronouns agree everywhere), a friend, a place and an object,
then walks one plot (opening → event → dialogue → resolution → feeling → moral → ending) chosen from
varied sentence templates. Recurring phrases ("Once upon a time"), agreement and plot order are the
structure; the word lists are large enough (about 1,200 distinct words) that a 2,048-token BPE fills.

All randomness comes from one `random.Random(seed)` stream, so the output is deterministic and
`generate_stories(n, s)` is a prefix of `generate_stories(m, s)` for m > n.
Regenerate the shipped file with:
    python -m neuroevo.data.story_grammar --n 1800 --seed 0 --out data/quickstories.txt
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass
from pathlib import Path

from neuroevo.atomic import atomic_write_text


def _words(spec: str) -> tuple[str, ...]:
    """Split a `|`-separated list, so multi-word entries ("teddy bear") stay readable in one string."""
    return tuple(w.strip() for w in spec.split("|") if w.strip())


GIRL_NAMES = _words(
    "Lily|Mia|Sue|Anna|Emma|Lucy|Sara|Ella|Zoe|Amy|Rose|Kate|Molly|Daisy|Ruby|Grace|Chloe|Sophie|Hannah|"
    "Olivia|Ava|Nora|Ivy|Luna|Stella|Hazel|Maya|Jenny|Katie|Pippa|Tilly|Rosie|Bella|Clara|Alice|Julia|Nina|"
    "Wendy|Polly|Holly|Fiona|Greta|Iris|Jade|Lena|Mabel|Olive|Penny|Quinn|Tess|Violet|Willow|Yara|Elsie|"
    "Freya|Matilda|Martha|Harriet|Lottie|Dora|"
    "Abby|Bonnie|Cora|Delia|Edith|Flora|Gemma|Heidi|Ingrid|Josie|Kira|Laura|Megan|Nell|Opal|Paige|Rita|Sadie|"
    "Tara|Ursula|Vera|Winnie|Xena|Yvonne|Zelda|Amber|Bridget|Carmen|Dinah|Esther|Gloria|Ivana|Judith|Lorna|"
    "Miriam"
)
BOY_NAMES = _words(
    "Tom|Ben|Max|Sam|Jack|Tim|Leo|Finn|Noah|Jake|Oscar|Toby|Ollie|Henry|Charlie|Harry|Theo|Lucas|Adam|Billy|"
    "Danny|Eddie|Freddie|George|Hugo|Ian|Joey|Kevin|Liam|Milo|Ned|Owen|Peter|Ralph|Simon|Teddy|Victor|Walter|"
    "Zack|Arthur|Barney|Caleb|Dexter|Felix|Gus|Jasper|Louis|Marco|Oliver|Percy|Rufus|Stanley|Timmy|Alfie|"
    "Bobby|Ethan|Frank|Jonah|Kai|Ronnie|"
    "Albert|Bruno|Cedric|Derek|Edwin|Fergus|Gordon|Harvey|Igor|Jerome|Kenneth|Lionel|Morris|Nigel|Otto|Pablo|"
    "Quentin|Rupert|Sebastian|Tristan|Vincent|Wesley|Xavier|Yusuf|Zeke|Ambrose|Boris|Clement|Desmond|Angus"
)
ANIMALS = _words(
    "cat|dog|bunny|bear|mouse|duck|fox|owl|frog|pig|cow|horse|sheep|goat|lamb|chick|puppy|kitten|squirrel|"
    "hedgehog|turtle|tiger|lion|monkey|elephant|giraffe|zebra|panda|penguin|rabbit|deer|wolf|raccoon|beaver|"
    "otter|seal|whale|dolphin|fish|bird|robin|parrot|crow|swan|goose|hen|rooster|donkey|pony|koala|kangaroo|"
    "hippo|crab|snail|ladybug|butterfly|bee|ant|caterpillar|dragon|dinosaur|unicorn|"
    "moose|badger|chipmunk|lizard|octopus|flamingo|peacock|pelican|camel|llama|gorilla|leopard|cheetah|rhino|"
    "walrus|mole|bat|gecko|toad|salmon|shark|starfish|jellyfish|grasshopper|firefly|dragonfly|woodpecker|"
    "sparrow|puffin|ostrich|porcupine|skunk|weasel|hamster|guinea pig"
)
HERO_ADJS = _words(
    "little|small|kind|happy|shy|brave|curious|silly|smart|gentle|friendly|playful|sleepy|funny|clever|cheerful|"
    "busy|tiny|quiet|lonely|proud|careful|good|young|polite|helpful|lazy|grumpy|noisy|bouncy|sweet|wise|"
    "cheeky|fluffy|fast|slow|strong|hungry|cute|bright|"
    "adventurous|bold|calm|daring|eager|fearless|generous|jolly|lively|merry|mighty|nimble|patient|quick|"
    "restless|sensible|thoughtful|timid|tidy|wiggly|witty|zippy|chatty|dreamy|fussy|giggly|humble|jumpy|loyal|"
    "messy|nosy|peaceful|speedy|stubborn|sunny"
)
THING_ADJS = _words(
    "big|shiny|soft|round|old|new|pretty|special|fancy|tiny|huge|heavy|light|smooth|bumpy|sparkly|striped|"
    "spotted|fuzzy|bouncy|wooden|paper|magic|funny|noisy|lovely|beautiful|strange|broken|little|"
    "glittery|golden|shimmering|tall|short|long|wobbly|squishy|crunchy|glowing|secret|ancient|dusty|"
    "enormous|colorful|plastic|metal|woolly|silky|dotted|curly|twisty|giant"
)
COLORS = _words("red|blue|green|yellow|pink|purple|orange|white|black|brown|gray|gold|silver|violet|"
                "turquoise|navy|crimson|lilac|beige|scarlet")
TOYS = _words(
    "ball|kite|teddy bear|doll|book|hat|shoe|cup|box|drum|bell|boat|car|truck|train|balloon|block|crayon|"
    "flower|leaf|stick|stone|shell|feather|key|ribbon|blanket|pillow|basket|bucket|spoon|bike|sled|wagon|"
    "whistle|jar|map|clock|lamp|mirror|umbrella|scarf|sock|glove|puzzle|robot|puppet|rocket|coin|ring|"
    "necklace|crown|wand|bag|backpack|brush|pencil|letter|card|toy horse|yo-yo|marble|button|rope|jacket|"
    "boot|helmet|bowl|plate|flag|tent|shovel|guitar|piano|flute|camera|picture|ticket|pebble|hoop|spinning top|"
    "trumpet|violin|xylophone|harmonica|spyglass|compass|telescope|magnet|paintbrush|sketchbook|notebook|"
    "envelope|lantern|flashlight|candle|teapot|kettle|hammer|wheelbarrow|skateboard|scooter|tricycle|jigsaw|"
    "domino|trophy|medal|bracelet|locket|purse|wallet|mitten|sweater|raincoat|nightcap|slipper"
)
FOODS = _words(
    "apple|banana|cookie|cake|pie|sandwich|muffin|carrot|pear|plum|peach|cherry|lemon|grape|strawberry|"
    "cupcake|pancake|pretzel|cracker|donut|biscuit|bun|sausage|potato|tomato|cucumber|melon|candy|lollipop|"
    "waffle|taco|noodle|pumpkin|radish|onion|bagel|carrot cake|orange|"
    "blueberry|raspberry|pineapple|watermelon|coconut|mango|apricot|avocado|fig|pea|cabbage|dumpling|"
    "meatball|omelette|pudding|jellybean|marshmallow|brownie|croissant|scone|cinnamon roll|peanut|almond|"
    "walnut"
)
PLACES = _words(
    "in the park|in the garden|in the forest|at the beach|on the farm|by the lake|by the river|near the pond|"
    "on the hill|in the meadow|in the big field|in the village|in the town|at school|in the library|at the zoo|"
    "at the shop|at the market|in the kitchen|in the backyard|at the playground|in a cave|on the mountain|"
    "on a small island|in the castle|in the jungle|in the barn|in the treehouse|at the bakery|at the toy store|"
    "at the museum|at the circus|at the harbor|in the valley|in the orchard|in the snow|by the sea|in the city|"
    "at the fair|in the woods|on the boat|at the pool|in the desert|at the station|"
    "at the airport|in the swamp|at the lighthouse|at the hospital|in the greenhouse|at the aquarium|"
    "at the campsite|in the attic|in the cellar|at the waterfall|at the stadium|at the post office|"
    "in the tunnel|at the windmill|in the pumpkin patch|at the ice rink|in the bamboo forest|at the palace"
)
HIDING_SPOTS = _words(
    "under the bed|behind the door|under a big rock|in the tall grass|under the table|behind a tree|"
    "in the sandbox|under the slide|next to the fence|in a pile of leaves|under the sofa|inside a boot|"
    "on top of the shelf|behind the curtains|in the flower bed|under a bush|in the toy box|beside the well|"
    "in the mud|under the bridge"
)
STUCK_SPOTS = _words(
    "up in a tall tree|in the deep mud|behind a high fence|in a thorny bush|on a rock in the river|"
    "inside an old pipe|under a heavy branch|at the bottom of a hole|on the roof of the shed|in a fishing net"
)
HELP_TOOLS = _words("a long stick|a ladder|a rope|a big box|a blanket|a bucket|a wooden plank|some string")
# "base/past/-ing" forms, so the text carries inflected verbs, which is also what a BPE learns to split.
ACTIVITIES = tuple(
    tuple(forms.split("/"))
    for forms in _words(
        "play ball/played ball/playing ball|run fast/ran fast/running fast|sing songs/sang songs/singing songs|"
        "draw pictures/drew pictures/drawing pictures|dance/danced/dancing|jump rope/jumped rope/jumping rope|"
        "read books/read books/reading books|swim/swam/swimming|climb trees/climbed trees/climbing trees|"
        "dig in the sand/dug in the sand/digging in the sand|fly kites/flew kites/flying kites|"
        "bake cookies/baked cookies/baking cookies|paint/painted/painting|ride bikes/rode bikes/riding bikes|"
        "build sand castles/built sand castles/building sand castles|pick flowers/picked flowers/picking flowers|"
        "look at the stars/looked at the stars/looking at the stars|"
        "splash in puddles/splashed in puddles/splashing in puddles|"
        "chase butterflies/chased butterflies/chasing butterflies|"
        "play hide and seek/played hide and seek/playing hide and seek|skip/skipped/skipping|hop/hopped/hopping|"
        "count the clouds/counted the clouds/counting the clouds|"
        "collect shells/collected shells/collecting shells|tell jokes/told jokes/telling jokes|"
        "play the drum/played the drum/playing the drum|"
        "swing on the swings/swung on the swings/swinging on the swings|"
        "roll down the hill/rolled down the hill/rolling down the hill|"
        "make mud pies/made mud pies/making mud pies|catch bugs/caught bugs/catching bugs|"
        "blow bubbles/blew bubbles/blowing bubbles|feed the ducks/fed the ducks/feeding the ducks|"
        "play tag/played tag/playing tag|build a fort/built a fort/building a fort|"
        "watch the boats/watched the boats/watching the boats|plant seeds/planted seeds/planting seeds|"
        "throw snowballs/threw snowballs/throwing snowballs|"
        "slide down the slide/slid down the slide/sliding down the slide|explore/explored/exploring|"
        "whistle/whistled/whistling|juggle balls/juggled balls/juggling balls|"
        "knit scarves/knitted scarves/knitting scarves|wrestle/wrestled/wrestling|tiptoe/tiptoed/tiptoeing|"
        "giggle/giggled/giggling|stack blocks/stacked blocks/stacking blocks|wander/wandered/wandering|"
        "march/marched/marching|gallop/galloped/galloping|sketch/sketched/sketching|"
        "somersault/somersaulted/somersaulting|bounce/bounced/bouncing|fish/fished/fishing|"
        "sail boats/sailed boats/sailing boats|"
        "pretend to be pirates/pretended to be pirates/pretending to be pirates"
    )
)
GOOD_FEELINGS = _words(
    "happy|glad|proud|excited|thankful|joyful|calm|cheerful|grateful|relieved|delighted|hopeful|pleased"
)
BAD_FEELINGS = _words(
    "sad|scared|worried|lonely|upset|angry|nervous|grumpy|confused|frustrated|disappointed|afraid|gloomy|"
    "jealous|sorry|tired|shy|"
    "embarrassed|grouchy|homesick|miserable|puzzled|cranky|anxious"
)
GROWN_UPS = _words("mom|dad|grandma|grandpa|aunt|uncle|teacher|neighbor|big sister|big brother|nanny|cousin")
FEARS = _words(
    "the dark|thunder|the big dog next door|deep water|the loud wind|the tall slide|the noisy vacuum|"
    "spiders|the old attic|the first day of school|bees|the big waves|the shadows on the wall|getting lost"
)
WHEN = _words(
    "One day|One morning|One sunny morning|One rainy afternoon|One cold winter day|One warm summer day|"
    "One windy autumn day|One spring morning|One evening|On Monday|On Tuesday|On Wednesday|On Thursday|"
    "On Friday|On Saturday|On Sunday|One bright day|One cloudy day|One snowy morning|Early one morning|"
    "Late one afternoon|One quiet night|After breakfast|After lunch|Before dinner|"
    "One day in January|One day in February|One day in March|One day in April|One day in May|One day in June|"
    "One day in July|One day in August|One day in September|One day in October|One day in November|"
    "One day in December|On a foggy morning|On a stormy night|At noon|At midnight"
)
WEATHER = _words(
    "The sun was shining.|It was raining outside.|Snow covered the ground.|The wind was blowing hard.|"
    "The sky was blue and clear.|Big gray clouds filled the sky.|It was very hot.|It was a chilly day.|"
    "Birds were singing in the trees.|Leaves were falling from the trees.|A rainbow was in the sky.|"
    "The air smelled like flowers."
)
EXCLAIMS = _words("Wow|Oh|Look|Hey|Yes|Oh my|Hmm|Well|Okay")
SAYS = _words("said|shouted|whispered|called|cried|laughed|giggled|replied|yelled|sang")
MORAL_LEADS = _words(
    "{name} learned that|From that day on, {name} knew that|{name} understood that|{name} found out that|"
    "That day, {name} learned that|Now {name} knew that"
)
ENDINGS = _words(
    "The end.|And they lived happily ever after.|From that day on, {name} and {friend} were best friends.|"
    "{name} went home with a big smile.|That night, {name} slept with a happy heart.|"
    "{name} could not wait to play again the next day.|It was the best day ever.|"
    "{name} and {friend} laughed and played until the sun went down.|Then it was time to go home for dinner.|"
    "{name} hugged {friend} and said goodbye."
)
NUMBER_WORDS = _words("two|three|four|five|six|seven|eight|nine|ten")


# Story length knobs: TinyStories-like structure at about 220 bytes a story keeps the shipped file
# under 400 KB for 1,800 stories and the CPU evaluation short.
P_OPTIONAL = 0.1  # each optional plot sentence (feelings, second dialogue line, aftermath)
P_SCENE = 0.08  # weather or a habit after the opening
P_MORAL = 0.15
P_ENDING = 0.2


@dataclass(frozen=True)
class _Character:
    """One member of the cast; pronouns are fixed at casting so every later sentence agrees."""

    name: str
    kind: str  # "girl", "boy" or an animal
    he: str
    him: str
    his: str

    @property
    def title(self) -> str:
        """'Ben' for a child, 'Ben the fox' for an animal, so an animal keeps its kind in view."""
        return self.name if self.kind in ("girl", "boy") else f"{self.name} the {self.kind}"


def generate_stories(n: int, seed: int) -> list[str]:
    """Return `n` stories, one string each with no newline inside, deterministic given `seed`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [_story(rng) for _ in range(n)]


def main(argv: list[str] | None = None) -> None:
    """Write `--n` stories, one per line, to `--out` (the command in the module docstring)."""
    parser = argparse.ArgumentParser(description="Write seeded grammar stories, one per line.")
    parser.add_argument("--n", type=int, default=1800, help="number of stories")
    parser.add_argument("--seed", type=int, default=0, help="seed of the grammar's random stream")
    parser.add_argument("--out", type=Path, required=True, help="output text file, one story per line")
    args = parser.parse_args(argv)
    stories = generate_stories(args.n, args.seed)
    atomic_write_text(args.out, "".join(story + "\n" for story in stories))


# --- story structure ---------------------------------------------------------------------------

# A plot is its sentences, each flagged required or optional, and the morals that fit it.
Plot = tuple[list[tuple[str, bool]], tuple[str, ...]]


def _story(rng: random.Random) -> str:
    """Opening, optional scene, one plot (optional sentences thinned), optional moral and ending."""
    hero = _cast(rng, taken=())
    friend = _cast(rng, taken=(hero.name,))
    sentences = [_opening(rng, hero)]
    if rng.random() < P_SCENE:
        sentences.append(rng.choice(WEATHER) if rng.random() < 0.5 else _habit(rng, hero))
    plot, morals = rng.choice(_PLOTS)(rng, hero, friend)
    sentences += [text for text, required in plot if required or rng.random() < P_OPTIONAL]
    if rng.random() < P_MORAL:
        sentences.append(f"{_fill(rng.choice(MORAL_LEADS), hero, friend)} {rng.choice(morals)}.")
    if rng.random() < P_ENDING:
        # Endings that name the friend only fit stories where the friend has already appeared.
        # Whole words: "Tim" is not met in a sentence about "Timmy" (both are boy names here).
        named = re.compile(rf"\b{re.escape(friend.name)}\b")
        met = any(named.search(text) for text in sentences)
        sentences.append(_fill(rng.choice([e for e in ENDINGS if met or "{friend}" not in e]), hero, friend))
    return " ".join(sentences)


def _opening(rng: random.Random, hero: _Character) -> str:
    kind = f"{rng.choice(HERO_ADJS)} {hero.kind}"
    return rng.choice(
        (
            f"Once upon a time, there was {_a(kind)} named {hero.name}.",
            f"Once upon a time, {_a(kind)} called {hero.name} lived {rng.choice(PLACES)}.",
            f"There once was {_a(kind)} named {hero.name}.",
            f"{hero.name} was {_a(kind)} who loved to {rng.choice(ACTIVITIES)[0]}.",
            f"Once there was {_a(kind)}. {_cap(hero.his)} name was {hero.name}.",
            f"{hero.name} was {_a(hero.kind)}. {_cap(hero.he)} was {rng.randint(2, 12)} years old.",
        )
    )


def _habit(rng: random.Random, hero: _Character) -> str:
    act = rng.choice(ACTIVITIES)
    return rng.choice(
        (
            f"{_cap(hero.he)} liked to {act[0]} {rng.choice(PLACES)}.",
            f"Every day, {hero.he} would {act[0]} with {hero.his} {rng.choice(GROWN_UPS)}.",
            f"{hero.name} had {_a(_thing(rng))} that {hero.he} loved very much.",
            f"{_cap(hero.his)} favorite thing was {act[2]}.",
        )
    )


def _lost_thing(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    toy = f"{rng.choice(COLORS)} {rng.choice(TOYS)}"
    spot = rng.choice(HIDING_SPOTS)
    return [
        (f"{rng.choice(WHEN)}, {hero.name} could not find {hero.his} {toy}.", True),
        (f"{_cap(hero.he)} felt {rng.choice(BAD_FEELINGS)} and looked everywhere.", False),
        (_say(rng, hero.name, f"Where is my {toy.split(' ', 1)[1]}?"), False),
        (f"{_cap(hero.his)} friend {friend.title} helped, and they found it {spot}.", True),
        (_say(rng, hero.name, rng.choice((f"Thank you, {friend.name}!", "You are a good friend."))), False),
    ], ("it is okay to ask for help", "friends help each other", "a good friend is always there")


def _new_friend(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    act = rng.choice(ACTIVITIES)
    return [
        (f"{rng.choice(WHEN)}, {hero.name} saw {_a(rng.choice(HERO_ADJS) + ' ' + friend.kind)} "
         f"sitting alone {rng.choice(PLACES)}.", True),
        (_say(rng, hero.name, rng.choice(("Hello! What is your name?", "Do you want to play with me?",
                                          "Why are you all by yourself?"))), True),
        (_say(rng, "the " + friend.kind, rng.choice((f"My name is {friend.name}.", "I have no friends here.",
                                                     "Yes, please!"))), False),
        (f"So they {act[1]} together all day.", True),
        (f"The {friend.kind} was not {rng.choice(BAD_FEELINGS)} anymore.", False),
    ], ("being kind makes new friends", "a smile can make a new friend", "everyone needs a friend")


def _stuck_animal(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    animal = rng.choice(ANIMALS)
    return [
        (f"{rng.choice(WHEN)}, {hero.name} and {hero.his} friend {friend.title} heard a small cry "
         f"{rng.choice(PLACES)}.", True),
        (f"{_cap(_a(animal))} was stuck {rng.choice(STUCK_SPOTS)}.", True),
        (rng.choice((f"{hero.name} was {rng.choice(BAD_FEELINGS)}, but {hero.he} wanted to help.",
                     f"{hero.name} did not know what to do.")), False),
        (_say(rng, friend.name, rng.choice(("We can help it together!", "Let us try!", "Be careful!"))), False),
        (f"They used {rng.choice(HELP_TOOLS)} to help the {animal} out.", True),
        (f"The {animal} was free and very {rng.choice(GOOD_FEELINGS)}.", False),
    ], ("it is good to help others", "being brave can help someone", "helping others makes you feel good")


def _sharing(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    food = rng.choice(FOODS)
    plural = _plural(food)
    return [
        (f"{rng.choice(WHEN)}, {hero.name} had {rng.choice(NUMBER_WORDS)} {plural} in {hero.his} "
         f"{rng.choice(('bag', 'basket', 'box', 'lunch box', 'pocket'))}.", True),
        (f"{_cap(hero.his)} friend {friend.title} had nothing to eat.", True),
        (f"{hero.name} wanted to keep all the {plural}, but then {hero.he} had an idea.", False),
        (_say(rng, hero.name, rng.choice((f"Do you want {_a(food)}?", "Have some.", "Let us share!"))), True),
        (f"They ate the {plural} together {rng.choice(PLACES)}.", False),
        (f"Both of them felt {rng.choice(GOOD_FEELINGS)}.", False),
    ], ("sharing makes everyone happy", "sharing is caring", "it feels good to share")


def _fear(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    fear = rng.choice(FEARS)
    grown = f"{hero.his} {rng.choice(GROWN_UPS)}"
    return [
        (f"{hero.name} was afraid of {fear}.", True),
        (_say(rng, hero.name, rng.choice(("I am scared!", "Please help me!", "I do not like this."))), False),
        (f"{_cap(grown)} gave {hero.him} a big hug.", True),
        (_say(rng, grown, rng.choice(("You are braver than you think.", "I am here with you.",
                                      "There is nothing to fear."))), False),
        (f"{hero.name} took a deep breath and was not afraid of {fear} anymore.", True),
    ], ("being brave is not the same as not being scared", "it helps to talk about your fears",
        "you can be brave even when you are small")


def _mistake(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    thing = rng.choice(TOYS)
    grown = rng.choice(GROWN_UPS)
    return [
        (f"{rng.choice(WHEN)}, {hero.name} broke {hero.his} {grown}'s {thing}.", True),
        (f"{hero.name} felt very {rng.choice(('sorry', 'sad', 'scared', 'worried'))}.", False),
        (f"{_cap(hero.he)} was {rng.choice(ACTIVITIES)[2]} and did not see it.", False),
        (f"{_cap(hero.he)} wanted to hide it.", False),
        (f"But {hero.he} told {hero.his} {grown} the truth.", True),
        (_say(rng, hero.name, rng.choice(("I am sorry. It was me.", "I broke it. I am sorry.",
                                          "Please do not be mad."))), False),
        (f"The {grown} smiled, and they fixed the {thing} together.", True),
    ], ("it is always best to tell the truth", "saying sorry makes things better", "honesty is important")


def _gift(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    present = rng.choice(("card", "picture", "necklace", "crown", "cake", "kite", "hat", "box", "song", "poem"))
    made = f"{rng.choice(COLORS)} {present}" if present not in ("song", "poem") else present
    return [
        (f"{rng.choice(WHEN)}, it was {friend.name}'s birthday.", True),
        (f"{hero.name} had no money for a present, so {hero.he} made {_a(made)}.", True),
        (f"{_cap(hero.he)} was {rng.choice(('worried', 'afraid', 'nervous'))} that {friend.name} would not like it.",
         False),
        (_say(rng, friend.name, rng.choice(("I love it!", "This is the best present!",
                                            "Did you make this for me?"))), True),
        (f"{friend.name} kept the {present} for a long, long time.", False),
    ], ("a gift from the heart is the best gift", "what matters is that you care",
        "the best presents do not cost money")


def _trip(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    acts = rng.sample(ACTIVITIES, 2)
    return [
        (f"{rng.choice(WHEN)}, {hero.name} and {hero.his} {rng.choice(GROWN_UPS)} went on a trip "
         f"{rng.choice(PLACES)}.", True),
        (rng.choice(WEATHER), False),
        (f"{hero.name} saw {_a(rng.choice(THING_ADJS) + ' ' + rng.choice(ANIMALS))}.", False),
        (_say(rng, hero.name, rng.choice(("Look at that!", "This is so much fun!", "Can we stay here forever?"))),
         False),
        (f"They {acts[0][1]} and {acts[1][1]}.", True),
        (f"When they came home, {hero.name} was tired but {rng.choice(GOOD_FEELINGS)}.", False),
    ], ("new places are fun to explore", "time with family is special", "every day can be an adventure")


def _garden(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    plant = rng.choice(("sunflower", "tomato", "pumpkin", "rose", "bean", "carrot", "apple tree", "daisy"))
    return [
        (f"{rng.choice(WHEN)}, {hero.name} planted a small {plant} seed.", True),
        (f"{_cap(hero.he)} watered it every day, but nothing happened.", False),
        (_say(rng, hero.name, rng.choice(("Why is it not growing?", "I want it to grow now!",
                                          "Grow, little seed, grow!"))), True),
        (_say(rng, f"{hero.his} friend {friend.title}", rng.choice(("You have to wait.", "Be patient.",
                                                                    "Good things take time."))), False),
        (f"After {rng.choice(NUMBER_WORDS)} weeks, a {rng.choice(COLORS)} {plant} grew up tall.", True),
    ], ("good things take time", "patience is important", "hard work pays off")


def _race(rng: random.Random, hero: _Character, friend: _Character) -> Plot:
    finish = rng.choice(("the big tree", "the red gate", "the old bridge", "the top of the hill", "the fence"))
    return [
        (f"{rng.choice(WHEN)}, {hero.name} and {friend.title} had a race to {finish}.", True),
        (_say(rng, friend.name, rng.choice(("Ready, set, go!", "I will win!", "One, two, three, go!"))), False),
        (f"{friend.name} ran fast, but then {friend.he} tripped and fell.", True),
        (f"{hero.name} stopped to help {friend.him} up.", True),
        (_say(rng, friend.name, rng.choice(("Thank you for stopping.", "You are a true friend."))), False),
        (f"They walked to {finish} together, holding hands.", False),
    ], ("helping a friend is more important than winning", "being kind is better than being first",
        "friends come before prizes")


_PLOTS = (_lost_thing, _new_friend, _stuck_animal, _sharing, _fear, _mistake, _gift, _trip, _garden, _race)


# --- pure helpers ------------------------------------------------------------------------------


def _cast(rng: random.Random, taken: tuple[str, ...]) -> _Character:
    """A child or an animal with a gendered name; `taken` keeps the hero and friend apart."""
    female = rng.random() < 0.5
    kind = ("girl" if female else "boy") if rng.random() < 0.5 else rng.choice(ANIMALS)
    names = [n for n in (GIRL_NAMES if female else BOY_NAMES) if n not in taken]
    if female:
        return _Character(rng.choice(names), kind, "she", "her", "her")
    return _Character(rng.choice(names), kind, "he", "him", "his")


def _say(rng: random.Random, speaker: str, line: str) -> str:
    """A line of dialogue, tagged before or after as in TinyStories; questions are 'asked'."""
    verb = "asked" if line.endswith("?") else rng.choice(SAYS)
    if rng.random() < 0.3 and not line.startswith("Hello"):
        line = f"{rng.choice(EXCLAIMS)}! {line}"
    if rng.random() < 0.5:
        return f'"{line[:-1] + "," if line.endswith(".") else line}" {verb} {speaker}.'
    return f'{_cap(speaker)} {verb}, "{line}"'


def _thing(rng: random.Random) -> str:
    return f"{rng.choice(THING_ADJS)} {rng.choice(COLORS)} {rng.choice(TOYS)}"


def _fill(template: str, hero: _Character, friend: _Character) -> str:
    return template.format(name=hero.name, friend=friend.name)


def _a(phrase: str) -> str:
    """The phrase with 'a' or 'an'; 'uni-' and 'use' start with a 'y' sound, so they take 'a'."""
    word = phrase.lower()
    vowel = word[:1] in "aeiou" and not word.startswith(("uni", "use"))
    return f"{'an' if vowel else 'a'} {phrase}"


def _plural(noun: str) -> str:
    if noun.endswith(("ch", "sh", "s", "x")) or noun in ("potato", "tomato", "mango"):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


if __name__ == "__main__":
    main()
