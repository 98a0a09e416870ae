"""The kitchen: bakes what MAKE_PIZZA asks for and answers PIZZA_READY."""
