from services.delivery.handlers import delivery
from services.run import main

main("delivery", delivery)
