"""EASE (Steck, WWW 2019): a closed-form linear item-item model, fitted on either split."""
