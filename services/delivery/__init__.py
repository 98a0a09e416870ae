"""The delivery: takes DELIVER_PIZZA to the door and answers PIZZA_DELIVERED."""
