"""The real class names of each dataset as its own files spell them (label order): CIFAR's
batches.meta, DTD's and EuroSAT's folders, the Stanford Cars devkit (cars_meta.mat), the
NWPU-RESISC45 folders, Caltech-101's 101_ObjectCategories, ImageNet's WordNet ids and the
devkit's lemmas (read from timm's copy of the ILSVRC-2012 synset lists)."""

from __future__ import annotations

import functools
from pathlib import Path

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

CIFAR100 = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()

CIFAR100_COARSE = """aquatic_mammals fish flowers food_containers fruit_and_vegetables
household_electrical_devices household_furniture insects large_carnivores
large_man-made_outdoor_things large_natural_outdoor_scenes large_omnivores_and_herbivores
medium_mammals non-insect_invertebrates people reptiles small_mammals trees vehicles_1
vehicles_2""".split()

DTD = """banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched crystalline
dotted fibrous flecked freckled frilly gauzy grid grooved honeycombed interlaced knitted lacelike
lined marbled matted meshed paisley perforated pitted pleated polka-dotted porous potholed scaly
smeared spiralled sprinkled stained stratified striped studded swirly veined waffled woven
wrinkled zigzagged""".split()

EUROSAT = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]

# NWPU-RESISC45's folder names; the hub copy (tanganke/resisc45) spells them with spaces.
RESISC45 = """airplane airport baseball_diamond basketball_court beach bridge chaparral church
circular_farmland cloud commercial_area dense_residential desert forest freeway golf_course
ground_track_field harbor industrial_area intersection island lake meadow medium_residential
mobile_home_park mountain overpass palace parking_lot railway railway_station
rectangular_farmland river roundabout runway sea_ice ship snowberg sparse_residential stadium
storage_tank tennis_court terrace thermal_power_station wetland""".split()

# 101_ObjectCategories' folders, as os.listdir sorts them (torchvision drops BACKGROUND_Google).
CALTECH101 = """BACKGROUND_Google Faces Faces_easy Leopards Motorbikes accordion airplanes anchor
ant barrel bass beaver binocular bonsai brain brontosaurus buddha butterfly camera cannon car_side
ceiling_fan cellphone chair chandelier cougar_body cougar_face crab crayfish crocodile
crocodile_head cup dalmatian dollar_bill dolphin dragonfly electric_guitar elephant emu euphonium
ewer ferry flamingo flamingo_head garfield gerenuk gramophone grand_piano hawksbill headphone
hedgehog helicopter ibis inline_skate joshua_tree kangaroo ketch lamp laptop llama lobster lotus
mandolin mayfly menorah metronome minaret nautilus octopus okapi pagoda panda pigeon pizza
platypus pyramid revolver rhino rooster saxophone schooner scissors scorpion sea_horse snoopy
soccer_ball stapler starfish stegosaurus stop_sign strawberry sunflower tick trilobite umbrella
watch water_lilly wheelchair wild_cat windsor_chair wrench yin_yang""".split()

# 196 names in the Stanford Cars devkit's style and (unsorted) order, cars_meta.mat's class_names;
# not a verbatim copy of the devkit list (no package here ships it).
CARS = [
    line.strip()
    for line in (Path(__file__).with_name("cars_names.txt")).read_text().splitlines()
    if line.strip()
]


@functools.cache
def imagenet() -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """ILSVRC-2012's 1000 WordNet ids (sorted, the label order) and each one's devkit names
    (meta.bin's ``wnid_to_classes``), from the synset lists timm ships."""
    import timm

    info = Path(timm.__file__).parent / "data" / "_info"
    wnids = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(
        line.split("\t", 1)
        for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
        if "\t" in line
    )
    return wnids, {w: tuple(lemmas[w].split(", ")) for w in wnids}


for _names, _count in (
    (CIFAR100, 100),
    (CIFAR100_COARSE, 20),
    (DTD, 47),
    (RESISC45, 45),
    (CALTECH101, 102),
    (CARS, 196),
):
    assert len(_names) == _count == len(set(_names)), (len(_names), _count)
