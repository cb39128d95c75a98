from lib.configs.grounding import Grounding
from lib.configs.rosalia import Rosalia
