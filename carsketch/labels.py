"""The classifier's two labels: the one home of their numbers and names."""

CAR = 1
NOT_CAR = 0
LABEL_NAMES = {NOT_CAR: "not_car", CAR: "car"}
LABEL_NUMBERS = {name: label for label, name in LABEL_NAMES.items()}
# The two lists of `categories` in params.yaml, in the order people read them.
SIDES = (LABEL_NAMES[CAR], LABEL_NAMES[NOT_CAR])
