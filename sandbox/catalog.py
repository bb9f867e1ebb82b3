"""The payout catalog: which brands a campaign offers and which product fits an amount."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sandbox.config import BrandSeed, ProductSeed


@dataclass(frozen=True)
class Choice:
    brand: str
    amount: Decimal


class Catalog:
    def __init__(self, brands: Iterable[BrandSeed]) -> None:
        self._brands = {brand.brand: brand for brand in sorted(brands, key=lambda b: b.brand)}

    def brands(
        self, *, allowed: Sequence[str] | None, country: str | None = None
    ) -> list[BrandSeed]:
        """Brands A to Z, limited to ``allowed`` slugs (None: all) and to ``country``."""
        return [
            brand
            for slug, brand in self._brands.items()
            if (allowed is None or slug in allowed)
            and (country is None or country in brand.countries)
        ]

    def get(self, slug: str) -> BrandSeed | None:
        return self._brands.get(slug)

    @staticmethod
    def products_in(brand: BrandSeed, currency: str) -> list[ProductSeed]:
        return [product for product in brand.products if product.currency == currency]

    @staticmethod
    def fits(brand: BrandSeed, *, currency: str, amount: Decimal) -> bool:
        return any(
            product.min_face_value <= amount <= product.max_face_value
            for product in Catalog.products_in(brand, currency)
        )

    def auto_choice(
        self, *, allowed: Sequence[str] | None, currency: str, remaining: Decimal
    ) -> Choice | None:
        """What a demo recipient picks: the first brand (A to Z) that takes the whole remaining
        amount, else the largest face value below it; None when nothing fits."""
        candidates = [b for b in self.brands(allowed=allowed) if self.products_in(b, currency)]
        for brand in candidates:
            if self.fits(brand, currency=currency, amount=remaining):
                return Choice(brand=brand.brand, amount=remaining)
        best: Choice | None = None
        for brand in candidates:
            for product in self.products_in(brand, currency):
                if product.max_face_value < remaining and (
                    best is None or product.max_face_value > best.amount
                ):
                    best = Choice(brand=brand.brand, amount=product.max_face_value)
        return best
