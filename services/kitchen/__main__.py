from services.kitchen import handlers
from services.run import main

main(handlers.NAME, handlers.ANSWERS, handlers.COMPENSATIONS)
