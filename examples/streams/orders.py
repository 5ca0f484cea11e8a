"""Orders enriched with customers and products, with strom.streams joins.

Reads three topics, all JSON values with string keys:
- `customers`, a table by customer id: {"name": ..., ...} (null deletes the customer);
- `products`, a table by product id: {"name": ..., "price": ..., ...};
- `orders`, a stream keyed by order id: {"customer": id, "product": id, "quantity": n}
  (orders that are not JSON objects of that shape are dropped).

and writes two:
- `orders-with-customers`: each order joined with its customer's row as the application
  holds it when it processes the order (a stream-table left join: an order whose customer is
  unknown gets "customer": null; customers written after it do not change it), key the
  order id, value {"order_id", "customer_id", "product_id", "quantity", "customer"};
- `orders-enriched`: those orders as a table by order id, joined with the product of their
  "product_id" (a foreign-key join): {..., "product": {...}, "total": quantity * price}.
  It is a table's changelog: an order is written when both it and its product are known,
  again whenever either changes (a new price updates every order of the product), and a
  null (tombstone) when its product is deleted.

The joins find a customer's and a product's row in the partition their key hashes to, so
producers must partition keys as Java clients do (murmur2; in librdkafka clients such as
confluent-kafka: "partitioner": "murmur2_random"), as for any Kafka Streams application.
Creates the topics if they are missing; runs until SIGTERM or Ctrl-C, then commits and stops
cleanly.

    python examples/streams/orders.py --bootstrap-servers localhost:9092
"""

from __future__ import annotations

from typing import Any

from _runner import run

from strom.streams import (
    Consumed,
    Joined,
    JsonSerde,
    Materialized,
    Produced,
    Repartitioned,
    Serdes,
    StreamsBuilder,
    Topology,
)

CUSTOMERS, PRODUCTS, ORDERS = "customers", "products", "orders"
WITH_CUSTOMERS, ENRICHED = "orders-with-customers", "orders-enriched"


def is_order(order: Any) -> bool:
    return (isinstance(order, dict) and isinstance(order.get("customer"), str)
            and isinstance(order.get("product"), str)
            and type(order.get("quantity")) is int and order["quantity"] > 0)


def by_customer(order_id: str, order: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The order keyed by its customer, for the join with the customers table."""
    return order["customer"], {"order_id": order_id, "customer_id": order["customer"],
                               "product_id": order["product"], "quantity": order["quantity"]}


def add_customer(order: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
    return {**order, "customer": customer}


def add_product(order: dict[str, Any], product: dict[str, Any]) -> dict[str, Any]:
    price = product.get("price")
    total = round(order["quantity"] * price, 2) if isinstance(price, int | float) else None
    return {**order, "product": product, "total": total}


def topology(customers_topic: str = CUSTOMERS, products_topic: str = PRODUCTS,
             orders_topic: str = ORDERS, with_customers_topic: str = WITH_CUSTOMERS,
             enriched_topic: str = ENRICHED) -> Topology:
    builder = StreamsBuilder()
    text, json = Serdes.String(), JsonSerde[Any]()
    customers = builder.table(customers_topic, Consumed(text, json),
                              Materialized("customers-store"))
    products = builder.table(products_topic, Consumed(text, json),
                             Materialized("products-store"))
    with_customers = (
        builder.stream(orders_topic, consumed=Consumed(text, json))
        .filter(lambda _order_id, order: is_order(order))
        # Keyed by customer, the orders go through the repartition topic
        # <application.id>-orders-by-customer-left-repartition, which has as many partitions
        # as `customers`: each order meets its customer's row in one task.
        .map(by_customer)
        .left_join(customers, add_customer, Joined(text, json, json, name="orders-by-customer"))
        .select_key(lambda _customer_id, order: order["order_id"]))
    with_customers.to(with_customers_topic, Produced(text, json))
    (with_customers
     # Keyed by order id again (repartitioned), the orders become a table, which the
     # foreign-key join subscribes to the products table with (through its internal topics
     # <application.id>-orders-products-subscription-{registration,response}-topic).
     .repartition(Repartitioned(text, json, name="orders-by-id"))
     .to_table(Materialized("orders-store"))
     .join(products, lambda order: order["product_id"], add_product, named="orders-products")
     .to_stream()
     .to(enriched_topic, Produced(text, json)))
    return builder.build()


def main() -> None:
    run(__doc__.splitlines()[0], "orders",
        [CUSTOMERS, PRODUCTS, ORDERS, WITH_CUSTOMERS, ENRICHED], lambda _args: topology(),
        "orders")


if __name__ == "__main__":
    main()
