from services.kitchen.handlers import kitchen
from services.run import main

main("kitchen", kitchen)
