"""Zero-shot prompt templates and class names that torchvision does not ship.

Templates are short descriptions in the spirit of CLIP's prompt ensembles, written for this project.
``{}`` is replaced by the class name.
"""

GENERIC = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a close-up photo of a {}.",
    "a low resolution photo of a {}.",
    "a good photo of a {}.",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "cifar10": GENERIC + ("a small photo of a {}.", "a pixelated photo of a {}."),
    "cifar100": GENERIC + ("a small photo of a {}.", "a pixelated photo of a {}."),
    "mnist": ('a photo of the number: "{}".', 'a handwritten digit "{}".'),
    "svhn": ('a photo of the number: "{}".', 'a street sign showing the digit "{}".'),
    "gtsrb": (
        'a zoomed in photo of a "{}" traffic sign.',
        'a centered photo of a "{}" traffic sign.',
        'a close up photo of a "{}" traffic sign.',
    ),
    "dtd": ("a photo of a {} texture.", "a photo of a {} pattern.", "a photo of a {} surface."),
    "eurosat": ("a satellite photo of {}.", "a centered satellite photo of {}."),
    "resisc45": ("satellite imagery of {}.", "aerial imagery of {}.", "an aerial photo of a {}."),
    "cars": ("a photo of a {}.", "a photo of my {}.", "a photo of the {}, a type of car."),
    "imagenet": GENERIC + ("a photo of the {}.", "a rendering of a {}."),
}

DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

# GTSRB class ids 0..42 in the official order.
GTSRB_CLASSES = [
    "speed limit 20 km/h", "speed limit 30 km/h", "speed limit 50 km/h", "speed limit 60 km/h",
    "speed limit 70 km/h", "speed limit 80 km/h", "end of speed limit 80 km/h",
    "speed limit 100 km/h", "speed limit 120 km/h", "no overtaking",
    "no overtaking by trucks", "right of way at the next intersection", "priority road",
    "yield", "stop", "no vehicles", "no trucks", "no entry", "general caution",
    "dangerous curve to the left", "dangerous curve to the right", "double curve",
    "bumpy road", "slippery road", "road narrows on the right", "road work", "traffic signals",
    "pedestrians", "children crossing", "bicycles crossing", "beware of ice or snow",
    "wild animals crossing", "end of all speed and passing limits", "turn right ahead",
    "turn left ahead", "ahead only", "go straight or right", "go straight or left", "keep right",
    "keep left", "roundabout mandatory", "end of no overtaking",
    "end of no overtaking by trucks",
]  # fmt: skip

# EuroSAT folder names -> readable names.
EUROSAT_NAMES = {
    "AnnualCrop": "annual crop land",
    "Forest": "forest",
    "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road",
    "Industrial": "industrial buildings",
    "Pasture": "pasture land",
    "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings",
    "River": "river",
    "SeaLake": "lake or sea",
}
