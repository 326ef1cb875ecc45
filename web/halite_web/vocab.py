"""Controlled vocabularies shared by the generator, the forms and the filters."""
CONDITIONS = ("new", "used")
FUELS = ("petrol", "diesel", "hybrid", "plug-in hybrid", "electric", "lpg")
TRANSMISSIONS = ("manual", "automatic")
BODY_TYPES = ("hatchback", "sedan", "estate", "suv", "coupe", "convertible",
              "mpv", "pickup", "van")
COLORS = ("white", "black", "grey", "silver", "blue", "red", "green", "brown",
          "beige", "orange", "yellow", "purple")
STATUSES = ("available", "reserved", "sold")

SORTS = {
    # key: (label, ORDER BY clause) -- a whitelist, never user text in SQL
    "newest": ("Newest listings", "c.created_at DESC, c.id DESC"),
    "price_asc": ("Price: low to high", "c.price ASC, c.id ASC"),
    "price_desc": ("Price: high to low", "c.price DESC, c.id DESC"),
    "year_desc": ("Year: newest first", "c.year DESC, c.id DESC"),
    "year_asc": ("Year: oldest first", "c.year ASC, c.id ASC"),
    "mileage_asc": ("Mileage: lowest first", "c.mileage_km ASC, c.id ASC"),
    "mileage_desc": ("Mileage: highest first", "c.mileage_km DESC, c.id DESC"),
}
DEFAULT_SORT = "newest"
