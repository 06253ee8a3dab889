"""The six service categories of the seed (涉水服务六类). Work orders add sub-categories and
deadlines; the registry needs only the top-level codes to answer "who is responsible"."""

SERVICE_CATEGORIES: dict[str, tuple[str, str]] = {
    "drainage": ("排水管理", "Drainage management"),
    "water_supply": ("供水管理", "Water supply management"),
    "soil_water": ("水土保持", "Soil and water conservation"),
    "sponge_city": ("海绵城市", "Sponge city"),
    "disaster": ("防灾减灾", "Disaster prevention and mitigation"),
    "pipe_network": ("管网查询", "Pipe-network query"),
}
