package seed

// Word lists for titles, descriptions, comments and the tag vocabulary.
// Tags are drawn from these by a Zipf-like popularity: the first words of
// tagWords are the "sunset" and "london" of the data set.

var tagWords = []string{
	// The most popular first: the head of the Zipf curve.
	"sunset", "beach", "london", "dog", "cat", "wedding", "nyc", "party", "travel", "family",
	"nature", "sky", "water", "friends", "flowers", "summer", "snow", "night", "japan", "paris",
	"blackandwhite", "city", "art", "portrait", "music", "street", "trip", "vacation", "winter", "spring",
	"autumn", "sea", "clouds", "tree", "bird", "baby", "kids", "food", "car", "architecture",
	"california", "usa", "uk", "france", "italy", "germany", "spain", "canada", "australia", "china",
	"tokyo", "berlin", "rome", "barcelona", "amsterdam", "sanfrancisco", "chicago", "seattle", "boston", "newyork",
	"macro", "landscape", "light", "red", "blue", "green", "yellow", "orange", "purple", "pink",
	"white", "black", "old", "new", "birthday", "christmas", "halloween", "concert", "festival", "garden",
	"park", "lake", "river", "mountain", "hiking", "camping", "road", "bridge", "building", "church",
	"museum", "graffiti", "sign", "window", "door", "reflection", "shadow", "sun", "moon", "stars",
	"rain", "fog", "ice", "fire", "smoke", "boat", "train", "plane", "bike", "bus",
	"horse", "cow", "sheep", "duck", "fish", "insect", "butterfly", "bee", "spider", "squirrel",
	"rose", "tulip", "daisy", "leaf", "leaves", "grass", "forest", "desert", "island", "coast",
	"wave", "surf", "sand", "rock", "stone", "cliff", "valley", "field", "farm", "village",
	"market", "shop", "cafe", "restaurant", "bar", "beer", "wine", "coffee", "cake", "pizza",
	"dinner", "lunch", "breakfast", "kitchen", "home", "house", "room", "bed", "chair", "table",
	"book", "computer", "phone", "camera", "nikon", "canon", "d70", "d50", "350d", "20d",
	"film", "lomo", "holga", "polaroid", "35mm", "digital", "hdr", "panorama", "longexposure", "bokeh",
	"closeup", "abstract", "texture", "pattern", "lines", "geometry", "minimal", "vintage", "retro", "urban",
	"industrial", "rust", "decay", "ruins", "castle", "tower", "skyline", "downtown", "subway", "station",
	"airport", "harbor", "pier", "lighthouse", "beachhouse", "pool", "swimming", "soccer", "football", "baseball",
	"basketball", "tennis", "golf", "running", "race", "marathon", "yoga", "dance", "theatre", "cinema",
	"band", "guitar", "drums", "piano", "singer", "dj", "club", "crowd", "people", "face",
	"eyes", "smile", "hands", "hair", "girl", "boy", "man", "woman", "mom", "dad",
	"grandma", "grandpa", "sister", "brother", "cousin", "puppy", "kitten", "pet", "zoo", "aquarium",
	"elephant", "lion", "tiger", "bear", "monkey", "giraffe", "penguin", "owl", "eagle", "seagull",
	"pigeon", "swan", "goose", "chicken", "frog", "turtle", "snake", "lizard", "deer", "fox",
	"wolf", "rabbit", "mouse", "hamster", "parrot", "dolphin", "whale", "shark", "crab", "jellyfish",
	"graduation", "school", "college", "university", "office", "work", "meeting", "conference", "pycon", "python",
	"code", "geek", "gadget", "robot", "toy", "lego", "game", "cards", "chess", "puzzle",
	"sculpture", "statue", "painting", "drawing", "sketch", "mural", "installation", "gallery", "exhibition", "design",
	"fashion", "dress", "shoes", "hat", "glasses", "jewelry", "makeup", "tattoo", "costume", "mask",
	"parade", "protest", "election", "flag", "monument", "memorial", "cemetery", "temple", "shrine", "mosque",
	"cathedral", "chapel", "palace", "fountain", "square", "plaza", "alley", "stairs", "tunnel", "wall",
	"fence", "gate", "roof", "chimney", "balcony", "porch", "yard", "lawn", "tractor", "truck",
	"motorcycle", "scooter", "taxi", "tram", "ferry", "sailboat", "kayak", "canoe", "ski", "snowboard",
	"skate", "skateboard", "climbing", "fishing", "picnic", "bbq", "beachparty", "roadtrip", "backpacking", "honeymoon",
	"anniversary", "reunion", "newborn", "toddler", "firstday", "holiday", "newyearseve", "thanksgiving", "easter", "valentine",
	"sunrise", "dusk", "dawn", "goldenhour", "bluehour", "storm", "lightning", "rainbow", "frost", "dew",
	"2004", "2005", "2006", "2007", "flickr", "explore", "interestingness", "topv111", "cameraphone", "iphoneography",
	"scotland", "ireland", "wales", "england", "norway", "sweden", "finland", "denmark", "iceland", "netherlands",
	"belgium", "switzerland", "austria", "poland", "czech", "prague", "vienna", "budapest", "greece", "athens",
	"turkey", "istanbul", "egypt", "morocco", "india", "thailand", "bangkok", "vietnam", "korea", "seoul",
	"hongkong", "singapore", "bali", "newzealand", "sydney", "melbourne", "mexico", "brazil", "argentina", "peru",
	"chile", "cuba", "hawaii", "alaska", "texas", "florida", "vegas", "losangeles", "portland", "vancouver",
	"toronto", "montreal", "oregon", "washington", "colorado", "utah", "arizona", "nevada", "yosemite", "grandcanyon",
}

// tagModifiers combine with tagWords into compound tags ("redcar",
// "oldbridge") until the vocabulary reaches its size, as real tag clouds do.
var tagModifiers = []string{"red", "blue", "old", "little", "big", "night", "winter", "summer", "golden", "wild"}

var titleAdjectives = []string{
	"Quiet", "Golden", "Late", "Early", "Lost", "Little", "Old", "Bright", "Blue", "Lazy",
	"Windy", "Misty", "Rainy", "Sunny", "Empty", "Busy", "Hidden", "Endless", "Silver", "Lonely",
	"Happy", "Sleepy", "Secret", "Frozen", "Northern", "Southern", "Distant", "Familiar", "Wild", "Gentle",
}

var titleNouns = []string{
	"afternoon", "morning", "evening", "harbor", "street", "garden", "road", "window", "bridge", "beach",
	"market", "corner", "river", "light", "shadows", "reflections", "skyline", "field", "forest", "station",
	"café", "rooftop", "alley", "coastline", "valley", "portrait", "party", "walk", "journey", "moment",
}

var descriptionSentences = []string{
	"Taken on the way home, just as the light changed.",
	"One of those days when everything lines up.",
	"Shot handheld, no tripod, a little noisy but I like it.",
	"We got there just before the crowds.",
	"My favorite spot in the whole city.",
	"The colors here are straight out of the camera.",
	"Second attempt; the first one was all blur.",
	"It rained five minutes later.",
	"Borrowed lens, which I now want to buy.",
	"Nobody else seemed to notice this.",
	"Part of a series from the trip.",
	"Cropped a little, otherwise untouched.",
	"This is what weekends are for.",
	"Look closely at the top left.",
	"Waited an hour for this one.",
}

var commentPhrases = []string{
	"Beautiful shot!", "Love the colors.", "Great composition.", "Wow!", "This made my day.",
	"Where was this taken?", "Fantastic light.", "So peaceful.", "Added to my favorites.", "Stunning.",
	"Nice capture!", "The detail is amazing.", "Is this film or digital?", "What lens did you use?",
	"Brings back memories.", "Excellent framing.", "Lovely mood.", "Great timing!", "Seen in Explore!",
	"Superb.",
}

var displayFirst = []string{
	"Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn",
	"Maria", "Wei", "Aisha", "Lars", "Yuki", "Omar", "Elena", "Kofi", "Priya", "Diego",
}

var displayLast = []string{
	"Smith", "Garcia", "Chen", "Müller", "Rossi", "Kowalski", "Nakamura", "Okafor", "Silva", "Novak",
	"Jensen", "Dubois", "Haddad", "Kim", "Patel", "Ivanova", "O'Brien", "Lindqvist", "Moreau", "Santos",
}
