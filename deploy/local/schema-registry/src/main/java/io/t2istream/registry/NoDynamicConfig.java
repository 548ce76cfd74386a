package io.t2istream.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/** The list that the config-index build step would produce: no dynamic (runtime-editable) properties. */
public class NoDynamicConfig {
  @Produces
  @ApplicationScoped
  DynamicConfigPropertyList properties() {
    return new DynamicConfigPropertyList(java.util.List.of());
  }
}
