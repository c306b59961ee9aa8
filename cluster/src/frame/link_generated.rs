pub use root::*;

const _: () = ::planus::check_version_compatibility("planus-1.3.0");

/// The root namespace
///
/// Generated from these locations:
/// * File `schema/link.fbs`
#[no_implicit_prelude]
#[allow(clippy::needless_lifetimes)]
mod root {
    /// The namespace `shardmq`
    ///
    /// Generated from these locations:
    /// * File `schema/link.fbs`
    pub mod shardmq {
        /// The namespace `shardmq.link`
        ///
        /// Generated from these locations:
        /// * File `schema/link.fbs`
        pub mod link {
            /// The table `Hello` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `Hello` in the file `schema/link.fbs:10`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct Hello {
                /// The field `cluster` in the table `Hello`
                pub cluster: ::planus::alloc::string::String,
                /// The field `node` in the table `Hello`
                pub node: ::planus::alloc::string::String,
                /// The field `lease` in the table `Hello`
                pub lease: i64,
                /// The field `shard` in the table `Hello`
                pub shard: u16,
                /// The field `shards` in the table `Hello`
                pub shards: u16,
                /// The field `link` in the table `Hello`
                pub link: u64,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for Hello {
                fn default() -> Self {
                    Self {
                        cluster: ::core::default::Default::default(),
                        node: ::core::default::Default::default(),
                        lease: 0,
                        shard: 0,
                        shards: 0,
                        link: 0,
                    }
                }
            }

            impl Hello {
                /// Creates a [HelloBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> HelloBuilder<()> {
                    HelloBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_cluster: impl ::planus::WriteAs<::planus::Offset<str>>,
                    field_node: impl ::planus::WriteAs<::planus::Offset<str>>,
                    field_lease: impl ::planus::WriteAsDefault<i64, i64>,
                    field_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_shards: impl ::planus::WriteAsDefault<u16, u16>,
                    field_link: impl ::planus::WriteAsDefault<u64, u64>,
                ) -> ::planus::Offset<Self> {
                    let prepared_cluster = field_cluster.prepare(builder);
                    let prepared_node = field_node.prepare(builder);
                    let prepared_lease = field_lease.prepare(builder, &0);
                    let prepared_shard = field_shard.prepare(builder, &0);
                    let prepared_shards = field_shards.prepare(builder, &0);
                    let prepared_link = field_link.prepare(builder, &0);

                    let mut table_writer: ::planus::table_writer::TableWriter<16> =
                        ::core::default::Default::default();
                    if prepared_lease.is_some() {
                        table_writer.write_entry::<i64>(2);
                    }
                    if prepared_link.is_some() {
                        table_writer.write_entry::<u64>(5);
                    }
                    table_writer.write_entry::<::planus::Offset<str>>(0);
                    table_writer.write_entry::<::planus::Offset<str>>(1);
                    if prepared_shard.is_some() {
                        table_writer.write_entry::<u16>(3);
                    }
                    if prepared_shards.is_some() {
                        table_writer.write_entry::<u16>(4);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_lease) = prepared_lease {
                                object_writer.write::<_, _, 8>(&prepared_lease);
                            }
                            if let ::core::option::Option::Some(prepared_link) = prepared_link {
                                object_writer.write::<_, _, 8>(&prepared_link);
                            }
                            object_writer.write::<_, _, 4>(&prepared_cluster);
                            object_writer.write::<_, _, 4>(&prepared_node);
                            if let ::core::option::Option::Some(prepared_shard) = prepared_shard {
                                object_writer.write::<_, _, 2>(&prepared_shard);
                            }
                            if let ::core::option::Option::Some(prepared_shards) = prepared_shards {
                                object_writer.write::<_, _, 2>(&prepared_shards);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<Hello>> for Hello {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Hello> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<Hello>> for Hello {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Hello>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<Hello> for Hello {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Hello> {
                    Hello::create(
                        builder,
                        &self.cluster,
                        &self.node,
                        self.lease,
                        self.shard,
                        self.shards,
                        self.link,
                    )
                }
            }

            /// Builder for serializing an instance of the [Hello] type.
            ///
            /// Can be created using the [Hello::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct HelloBuilder<State>(State);

            impl HelloBuilder<()> {
                /// Setter for the [`cluster` field](Hello#structfield.cluster).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn cluster<T0>(self, value: T0) -> HelloBuilder<(T0,)>
                where
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                {
                    HelloBuilder((value,))
                }
            }

            impl<T0> HelloBuilder<(T0,)> {
                /// Setter for the [`node` field](Hello#structfield.node).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn node<T1>(self, value: T1) -> HelloBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAs<::planus::Offset<str>>,
                {
                    let (v0,) = self.0;
                    HelloBuilder((v0, value))
                }
            }

            impl<T0, T1> HelloBuilder<(T0, T1)> {
                /// Setter for the [`lease` field](Hello#structfield.lease).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn lease<T2>(self, value: T2) -> HelloBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<i64, i64>,
                {
                    let (v0, v1) = self.0;
                    HelloBuilder((v0, v1, value))
                }

                /// Sets the [`lease` field](Hello#structfield.lease) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn lease_as_default(self) -> HelloBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.lease(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> HelloBuilder<(T0, T1, T2)> {
                /// Setter for the [`shard` field](Hello#structfield.shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard<T3>(self, value: T3) -> HelloBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0, v1, v2) = self.0;
                    HelloBuilder((v0, v1, v2, value))
                }

                /// Sets the [`shard` field](Hello#structfield.shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard_as_default(
                    self,
                ) -> HelloBuilder<(T0, T1, T2, ::planus::DefaultValue)> {
                    self.shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3> HelloBuilder<(T0, T1, T2, T3)> {
                /// Setter for the [`shards` field](Hello#structfield.shards).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shards<T4>(self, value: T4) -> HelloBuilder<(T0, T1, T2, T3, T4)>
                where
                    T4: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0, v1, v2, v3) = self.0;
                    HelloBuilder((v0, v1, v2, v3, value))
                }

                /// Sets the [`shards` field](Hello#structfield.shards) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shards_as_default(
                    self,
                ) -> HelloBuilder<(T0, T1, T2, T3, ::planus::DefaultValue)> {
                    self.shards(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4> HelloBuilder<(T0, T1, T2, T3, T4)> {
                /// Setter for the [`link` field](Hello#structfield.link).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn link<T5>(self, value: T5) -> HelloBuilder<(T0, T1, T2, T3, T4, T5)>
                where
                    T5: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0, v1, v2, v3, v4) = self.0;
                    HelloBuilder((v0, v1, v2, v3, v4, value))
                }

                /// Sets the [`link` field](Hello#structfield.link) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn link_as_default(
                    self,
                ) -> HelloBuilder<(T0, T1, T2, T3, T4, ::planus::DefaultValue)> {
                    self.link(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4, T5> HelloBuilder<(T0, T1, T2, T3, T4, T5)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [Hello].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<Hello>
                where
                    Self: ::planus::WriteAsOffset<Hello>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAs<::planus::Offset<str>>,
                    T2: ::planus::WriteAsDefault<i64, i64>,
                    T3: ::planus::WriteAsDefault<u16, u16>,
                    T4: ::planus::WriteAsDefault<u16, u16>,
                    T5: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAs<::planus::Offset<Hello>>
                for HelloBuilder<(T0, T1, T2, T3, T4, T5)>
            {
                type Prepared = ::planus::Offset<Hello>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Hello> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAs<::planus::Offset<str>>,
                    T2: ::planus::WriteAsDefault<i64, i64>,
                    T3: ::planus::WriteAsDefault<u16, u16>,
                    T4: ::planus::WriteAsDefault<u16, u16>,
                    T5: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAsOptional<::planus::Offset<Hello>>
                for HelloBuilder<(T0, T1, T2, T3, T4, T5)>
            {
                type Prepared = ::planus::Offset<Hello>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Hello>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAs<::planus::Offset<str>>,
                    T2: ::planus::WriteAsDefault<i64, i64>,
                    T3: ::planus::WriteAsDefault<u16, u16>,
                    T4: ::planus::WriteAsDefault<u16, u16>,
                    T5: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAsOffset<Hello> for HelloBuilder<(T0, T1, T2, T3, T4, T5)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Hello> {
                    let (v0, v1, v2, v3, v4, v5) = &self.0;
                    Hello::create(builder, v0, v1, v2, v3, v4, v5)
                }
            }

            /// Reference to a deserialized [Hello].
            #[derive(Copy, Clone)]
            pub struct HelloRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> HelloRef<'a> {
                /// Getter for the [`cluster` field](Hello#structfield.cluster).
                #[inline]
                pub fn cluster(&self) -> ::planus::Result<&'a ::core::primitive::str> {
                    self.0.access_required(0, "Hello", "cluster")
                }

                /// Getter for the [`node` field](Hello#structfield.node).
                #[inline]
                pub fn node(&self) -> ::planus::Result<&'a ::core::primitive::str> {
                    self.0.access_required(1, "Hello", "node")
                }

                /// Getter for the [`lease` field](Hello#structfield.lease).
                #[inline]
                pub fn lease(&self) -> ::planus::Result<i64> {
                    ::core::result::Result::Ok(self.0.access(2, "Hello", "lease")?.unwrap_or(0))
                }

                /// Getter for the [`shard` field](Hello#structfield.shard).
                #[inline]
                pub fn shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(self.0.access(3, "Hello", "shard")?.unwrap_or(0))
                }

                /// Getter for the [`shards` field](Hello#structfield.shards).
                #[inline]
                pub fn shards(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(self.0.access(4, "Hello", "shards")?.unwrap_or(0))
                }

                /// Getter for the [`link` field](Hello#structfield.link).
                #[inline]
                pub fn link(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(self.0.access(5, "Hello", "link")?.unwrap_or(0))
                }
            }

            impl<'a> ::core::fmt::Debug for HelloRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("HelloRef");
                    f.field("cluster", &self.cluster());
                    f.field("node", &self.node());
                    f.field("lease", &self.lease());
                    f.field("shard", &self.shard());
                    f.field("shards", &self.shards());
                    f.field("link", &self.link());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<HelloRef<'a>> for Hello {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: HelloRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        cluster: ::core::convert::Into::into(value.cluster()?),
                        node: ::core::convert::Into::into(value.node()?),
                        lease: ::core::convert::TryInto::try_into(value.lease()?)?,
                        shard: ::core::convert::TryInto::try_into(value.shard()?)?,
                        shards: ::core::convert::TryInto::try_into(value.shards()?)?,
                        link: ::core::convert::TryInto::try_into(value.link()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for HelloRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for HelloRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[HelloRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<Hello>> for Hello {
                type Value = ::planus::Offset<Hello>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<Hello>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for HelloRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[HelloRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `Route` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `Route` in the file `schema/link.fbs:26`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct Route {
                /// The field `filter` in the table `Route`
                pub filter: ::planus::alloc::string::String,
                /// The field `group` in the table `Route`
                pub group: ::core::option::Option<::planus::alloc::string::String>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for Route {
                fn default() -> Self {
                    Self {
                        filter: ::core::default::Default::default(),
                        group: ::core::default::Default::default(),
                    }
                }
            }

            impl Route {
                /// Creates a [RouteBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> RouteBuilder<()> {
                    RouteBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_filter: impl ::planus::WriteAs<::planus::Offset<str>>,
                    field_group: impl ::planus::WriteAsOptional<
                        ::planus::Offset<::core::primitive::str>,
                    >,
                ) -> ::planus::Offset<Self> {
                    let prepared_filter = field_filter.prepare(builder);
                    let prepared_group = field_group.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<8> =
                        ::core::default::Default::default();
                    table_writer.write_entry::<::planus::Offset<str>>(0);
                    if prepared_group.is_some() {
                        table_writer.write_entry::<::planus::Offset<str>>(1);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            object_writer.write::<_, _, 4>(&prepared_filter);
                            if let ::core::option::Option::Some(prepared_group) = prepared_group {
                                object_writer.write::<_, _, 4>(&prepared_group);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<Route>> for Route {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Route> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<Route>> for Route {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Route>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<Route> for Route {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Route> {
                    Route::create(builder, &self.filter, &self.group)
                }
            }

            /// Builder for serializing an instance of the [Route] type.
            ///
            /// Can be created using the [Route::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct RouteBuilder<State>(State);

            impl RouteBuilder<()> {
                /// Setter for the [`filter` field](Route#structfield.filter).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn filter<T0>(self, value: T0) -> RouteBuilder<(T0,)>
                where
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                {
                    RouteBuilder((value,))
                }
            }

            impl<T0> RouteBuilder<(T0,)> {
                /// Setter for the [`group` field](Route#structfield.group).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn group<T1>(self, value: T1) -> RouteBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                {
                    let (v0,) = self.0;
                    RouteBuilder((v0, value))
                }

                /// Sets the [`group` field](Route#structfield.group) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn group_as_null(self) -> RouteBuilder<(T0, ())> {
                    self.group(())
                }
            }

            impl<T0, T1> RouteBuilder<(T0, T1)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [Route].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<Route>
                where
                    Self: ::planus::WriteAsOffset<Route>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAs<::planus::Offset<Route>> for RouteBuilder<(T0, T1)>
            {
                type Prepared = ::planus::Offset<Route>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Route> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAsOptional<::planus::Offset<Route>> for RouteBuilder<(T0, T1)>
            {
                type Prepared = ::planus::Offset<Route>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Route>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAsOffset<Route> for RouteBuilder<(T0, T1)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Route> {
                    let (v0, v1) = &self.0;
                    Route::create(builder, v0, v1)
                }
            }

            /// Reference to a deserialized [Route].
            #[derive(Copy, Clone)]
            pub struct RouteRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> RouteRef<'a> {
                /// Getter for the [`filter` field](Route#structfield.filter).
                #[inline]
                pub fn filter(&self) -> ::planus::Result<&'a ::core::primitive::str> {
                    self.0.access_required(0, "Route", "filter")
                }

                /// Getter for the [`group` field](Route#structfield.group).
                #[inline]
                pub fn group(
                    &self,
                ) -> ::planus::Result<::core::option::Option<&'a ::core::primitive::str>>
                {
                    self.0.access(1, "Route", "group")
                }
            }

            impl<'a> ::core::fmt::Debug for RouteRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("RouteRef");
                    f.field("filter", &self.filter());
                    if let ::core::option::Option::Some(field_group) = self.group().transpose() {
                        f.field("group", &field_group);
                    }
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<RouteRef<'a>> for Route {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: RouteRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        filter: ::core::convert::Into::into(value.filter()?),
                        group: value.group()?.map(::core::convert::Into::into),
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for RouteRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for RouteRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[RouteRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<Route>> for Route {
                type Value = ::planus::Offset<Route>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<Route>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for RouteRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[RouteRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `RouteSnapshot` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `RouteSnapshot` in the file `schema/link.fbs:33`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct RouteSnapshot {
                /// The field `routes` in the table `RouteSnapshot`
                pub routes: ::core::option::Option<::planus::alloc::vec::Vec<self::Route>>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for RouteSnapshot {
                fn default() -> Self {
                    Self { routes: ::core::default::Default::default() }
                }
            }

            impl RouteSnapshot {
                /// Creates a [RouteSnapshotBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> RouteSnapshotBuilder<()> {
                    RouteSnapshotBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_routes: impl ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::Route>]>,
                    >,
                ) -> ::planus::Offset<Self> {
                    let prepared_routes = field_routes.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<6> =
                        ::core::default::Default::default();
                    if prepared_routes.is_some() {
                        table_writer
                            .write_entry::<::planus::Offset<[::planus::Offset<self::Route>]>>(0);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_routes) = prepared_routes {
                                object_writer.write::<_, _, 4>(&prepared_routes);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<RouteSnapshot>> for RouteSnapshot {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RouteSnapshot> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<RouteSnapshot>> for RouteSnapshot {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RouteSnapshot>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<RouteSnapshot> for RouteSnapshot {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RouteSnapshot> {
                    RouteSnapshot::create(builder, &self.routes)
                }
            }

            /// Builder for serializing an instance of the [RouteSnapshot] type.
            ///
            /// Can be created using the [RouteSnapshot::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct RouteSnapshotBuilder<State>(State);

            impl RouteSnapshotBuilder<()> {
                /// Setter for the [`routes` field](RouteSnapshot#structfield.routes).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn routes<T0>(self, value: T0) -> RouteSnapshotBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::Route>]>,
                    >,
                {
                    RouteSnapshotBuilder((value,))
                }

                /// Sets the [`routes` field](RouteSnapshot#structfield.routes) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn routes_as_null(self) -> RouteSnapshotBuilder<((),)> {
                    self.routes(())
                }
            }

            impl<T0> RouteSnapshotBuilder<(T0,)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [RouteSnapshot].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RouteSnapshot>
                where
                    Self: ::planus::WriteAsOffset<RouteSnapshot>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                > ::planus::WriteAs<::planus::Offset<RouteSnapshot>>
                for RouteSnapshotBuilder<(T0,)>
            {
                type Prepared = ::planus::Offset<RouteSnapshot>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RouteSnapshot> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                > ::planus::WriteAsOptional<::planus::Offset<RouteSnapshot>>
                for RouteSnapshotBuilder<(T0,)>
            {
                type Prepared = ::planus::Offset<RouteSnapshot>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RouteSnapshot>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                > ::planus::WriteAsOffset<RouteSnapshot> for RouteSnapshotBuilder<(T0,)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RouteSnapshot> {
                    let (v0,) = &self.0;
                    RouteSnapshot::create(builder, v0)
                }
            }

            /// Reference to a deserialized [RouteSnapshot].
            #[derive(Copy, Clone)]
            pub struct RouteSnapshotRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> RouteSnapshotRef<'a> {
                /// Getter for the [`routes` field](RouteSnapshot#structfield.routes).
                #[inline]
                pub fn routes(
                    &self,
                ) -> ::planus::Result<
                    ::core::option::Option<
                        ::planus::Vector<'a, ::planus::Result<self::RouteRef<'a>>>,
                    >,
                > {
                    self.0.access(0, "RouteSnapshot", "routes")
                }
            }

            impl<'a> ::core::fmt::Debug for RouteSnapshotRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("RouteSnapshotRef");
                    if let ::core::option::Option::Some(field_routes) = self.routes().transpose() {
                        f.field("routes", &field_routes);
                    }
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<RouteSnapshotRef<'a>> for RouteSnapshot {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: RouteSnapshotRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        routes: if let ::core::option::Option::Some(routes) = value.routes()? {
                            ::core::option::Option::Some(routes.to_vec_result()?)
                        } else {
                            ::core::option::Option::None
                        },
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for RouteSnapshotRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for RouteSnapshotRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[RouteSnapshotRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<RouteSnapshot>> for RouteSnapshot {
                type Value = ::planus::Offset<RouteSnapshot>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<RouteSnapshot>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for RouteSnapshotRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[RouteSnapshotRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `RouteDelta` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `RouteDelta` in the file `schema/link.fbs:38`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct RouteDelta {
                /// The field `version` in the table `RouteDelta`
                pub version: u64,
                /// The field `added` in the table `RouteDelta`
                pub added: ::core::option::Option<::planus::alloc::vec::Vec<self::Route>>,
                /// The field `removed` in the table `RouteDelta`
                pub removed: ::core::option::Option<::planus::alloc::vec::Vec<self::Route>>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for RouteDelta {
                fn default() -> Self {
                    Self {
                        version: 0,
                        added: ::core::default::Default::default(),
                        removed: ::core::default::Default::default(),
                    }
                }
            }

            impl RouteDelta {
                /// Creates a [RouteDeltaBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> RouteDeltaBuilder<()> {
                    RouteDeltaBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_version: impl ::planus::WriteAsDefault<u64, u64>,
                    field_added: impl ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::Route>]>,
                    >,
                    field_removed: impl ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::Route>]>,
                    >,
                ) -> ::planus::Offset<Self> {
                    let prepared_version = field_version.prepare(builder, &0);
                    let prepared_added = field_added.prepare(builder);
                    let prepared_removed = field_removed.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<10> =
                        ::core::default::Default::default();
                    if prepared_version.is_some() {
                        table_writer.write_entry::<u64>(0);
                    }
                    if prepared_added.is_some() {
                        table_writer
                            .write_entry::<::planus::Offset<[::planus::Offset<self::Route>]>>(1);
                    }
                    if prepared_removed.is_some() {
                        table_writer
                            .write_entry::<::planus::Offset<[::planus::Offset<self::Route>]>>(2);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_version) = prepared_version
                            {
                                object_writer.write::<_, _, 8>(&prepared_version);
                            }
                            if let ::core::option::Option::Some(prepared_added) = prepared_added {
                                object_writer.write::<_, _, 4>(&prepared_added);
                            }
                            if let ::core::option::Option::Some(prepared_removed) = prepared_removed
                            {
                                object_writer.write::<_, _, 4>(&prepared_removed);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<RouteDelta>> for RouteDelta {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<RouteDelta> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<RouteDelta>> for RouteDelta {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RouteDelta>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<RouteDelta> for RouteDelta {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<RouteDelta> {
                    RouteDelta::create(builder, self.version, &self.added, &self.removed)
                }
            }

            /// Builder for serializing an instance of the [RouteDelta] type.
            ///
            /// Can be created using the [RouteDelta::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct RouteDeltaBuilder<State>(State);

            impl RouteDeltaBuilder<()> {
                /// Setter for the [`version` field](RouteDelta#structfield.version).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn version<T0>(self, value: T0) -> RouteDeltaBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u64, u64>,
                {
                    RouteDeltaBuilder((value,))
                }

                /// Sets the [`version` field](RouteDelta#structfield.version) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn version_as_default(self) -> RouteDeltaBuilder<(::planus::DefaultValue,)> {
                    self.version(::planus::DefaultValue)
                }
            }

            impl<T0> RouteDeltaBuilder<(T0,)> {
                /// Setter for the [`added` field](RouteDelta#structfield.added).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn added<T1>(self, value: T1) -> RouteDeltaBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::Route>]>,
                    >,
                {
                    let (v0,) = self.0;
                    RouteDeltaBuilder((v0, value))
                }

                /// Sets the [`added` field](RouteDelta#structfield.added) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn added_as_null(self) -> RouteDeltaBuilder<(T0, ())> {
                    self.added(())
                }
            }

            impl<T0, T1> RouteDeltaBuilder<(T0, T1)> {
                /// Setter for the [`removed` field](RouteDelta#structfield.removed).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn removed<T2>(self, value: T2) -> RouteDeltaBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::Route>]>,
                    >,
                {
                    let (v0, v1) = self.0;
                    RouteDeltaBuilder((v0, v1, value))
                }

                /// Sets the [`removed` field](RouteDelta#structfield.removed) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn removed_as_null(self) -> RouteDeltaBuilder<(T0, T1, ())> {
                    self.removed(())
                }
            }

            impl<T0, T1, T2> RouteDeltaBuilder<(T0, T1, T2)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [RouteDelta].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<RouteDelta>
                where
                    Self: ::planus::WriteAsOffset<RouteDelta>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                > ::planus::WriteAs<::planus::Offset<RouteDelta>>
                for RouteDeltaBuilder<(T0, T1, T2)>
            {
                type Prepared = ::planus::Offset<RouteDelta>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<RouteDelta> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                > ::planus::WriteAsOptional<::planus::Offset<RouteDelta>>
                for RouteDeltaBuilder<(T0, T1, T2)>
            {
                type Prepared = ::planus::Offset<RouteDelta>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RouteDelta>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<self::Route>]>>,
                > ::planus::WriteAsOffset<RouteDelta> for RouteDeltaBuilder<(T0, T1, T2)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<RouteDelta> {
                    let (v0, v1, v2) = &self.0;
                    RouteDelta::create(builder, v0, v1, v2)
                }
            }

            /// Reference to a deserialized [RouteDelta].
            #[derive(Copy, Clone)]
            pub struct RouteDeltaRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> RouteDeltaRef<'a> {
                /// Getter for the [`version` field](RouteDelta#structfield.version).
                #[inline]
                pub fn version(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(0, "RouteDelta", "version")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`added` field](RouteDelta#structfield.added).
                #[inline]
                pub fn added(
                    &self,
                ) -> ::planus::Result<
                    ::core::option::Option<
                        ::planus::Vector<'a, ::planus::Result<self::RouteRef<'a>>>,
                    >,
                > {
                    self.0.access(1, "RouteDelta", "added")
                }

                /// Getter for the [`removed` field](RouteDelta#structfield.removed).
                #[inline]
                pub fn removed(
                    &self,
                ) -> ::planus::Result<
                    ::core::option::Option<
                        ::planus::Vector<'a, ::planus::Result<self::RouteRef<'a>>>,
                    >,
                > {
                    self.0.access(2, "RouteDelta", "removed")
                }
            }

            impl<'a> ::core::fmt::Debug for RouteDeltaRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("RouteDeltaRef");
                    f.field("version", &self.version());
                    if let ::core::option::Option::Some(field_added) = self.added().transpose() {
                        f.field("added", &field_added);
                    }
                    if let ::core::option::Option::Some(field_removed) = self.removed().transpose()
                    {
                        f.field("removed", &field_removed);
                    }
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<RouteDeltaRef<'a>> for RouteDelta {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: RouteDeltaRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        version: ::core::convert::TryInto::try_into(value.version()?)?,
                        added: if let ::core::option::Option::Some(added) = value.added()? {
                            ::core::option::Option::Some(added.to_vec_result()?)
                        } else {
                            ::core::option::Option::None
                        },
                        removed: if let ::core::option::Option::Some(removed) = value.removed()? {
                            ::core::option::Option::Some(removed.to_vec_result()?)
                        } else {
                            ::core::option::Option::None
                        },
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for RouteDeltaRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for RouteDeltaRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[RouteDeltaRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<RouteDelta>> for RouteDelta {
                type Value = ::planus::Offset<RouteDelta>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<RouteDelta>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for RouteDeltaRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[RouteDeltaRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `Publish` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `Publish` in the file `schema/link.fbs:47`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct Publish {
                /// The field `message` in the table `Publish`
                pub message: ::planus::alloc::vec::Vec<u8>,
                /// The field `receipt` in the table `Publish`
                pub receipt: u64,
                /// The field `reply_shard` in the table `Publish`
                pub reply_shard: u16,
                /// The field `deliver` in the table `Publish`
                pub deliver: bool,
                /// The field `shared_filter` in the table `Publish`
                pub shared_filter: ::core::option::Option<::planus::alloc::string::String>,
                /// The field `shared_group` in the table `Publish`
                pub shared_group: ::core::option::Option<::planus::alloc::string::String>,
                /// The field `retained_holders` in the table `Publish`
                pub retained_holders: ::core::option::Option<
                    ::planus::alloc::vec::Vec<::planus::alloc::string::String>,
                >,
                /// The field `publisher` in the table `Publish`
                pub publisher: ::core::option::Option<u64>,
                /// The field `retained_version` in the table `Publish`
                pub retained_version: u64,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for Publish {
                fn default() -> Self {
                    Self {
                        message: ::core::default::Default::default(),
                        receipt: 0,
                        reply_shard: 0,
                        deliver: true,
                        shared_filter: ::core::default::Default::default(),
                        shared_group: ::core::default::Default::default(),
                        retained_holders: ::core::default::Default::default(),
                        publisher: ::core::default::Default::default(),
                        retained_version: 0,
                    }
                }
            }

            impl Publish {
                /// Creates a [PublishBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> PublishBuilder<()> {
                    PublishBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_message: impl ::planus::WriteAs<::planus::Offset<[u8]>>,
                    field_receipt: impl ::planus::WriteAsDefault<u64, u64>,
                    field_reply_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_deliver: impl ::planus::WriteAsDefault<bool, bool>,
                    field_shared_filter: impl ::planus::WriteAsOptional<
                        ::planus::Offset<::core::primitive::str>,
                    >,
                    field_shared_group: impl ::planus::WriteAsOptional<
                        ::planus::Offset<::core::primitive::str>,
                    >,
                    field_retained_holders: impl ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<str>]>,
                    >,
                    field_publisher: impl ::planus::WriteAsOptional<u64>,
                    field_retained_version: impl ::planus::WriteAsDefault<u64, u64>,
                ) -> ::planus::Offset<Self> {
                    let prepared_message = field_message.prepare(builder);
                    let prepared_receipt = field_receipt.prepare(builder, &0);
                    let prepared_reply_shard = field_reply_shard.prepare(builder, &0);
                    let prepared_deliver = field_deliver.prepare(builder, &true);
                    let prepared_shared_filter = field_shared_filter.prepare(builder);
                    let prepared_shared_group = field_shared_group.prepare(builder);
                    let prepared_retained_holders = field_retained_holders.prepare(builder);
                    let prepared_publisher = field_publisher.prepare(builder);
                    let prepared_retained_version = field_retained_version.prepare(builder, &0);

                    let mut table_writer: ::planus::table_writer::TableWriter<22> =
                        ::core::default::Default::default();
                    if prepared_receipt.is_some() {
                        table_writer.write_entry::<u64>(1);
                    }
                    if prepared_publisher.is_some() {
                        table_writer.write_entry::<u64>(7);
                    }
                    if prepared_retained_version.is_some() {
                        table_writer.write_entry::<u64>(8);
                    }
                    table_writer.write_entry::<::planus::Offset<[u8]>>(0);
                    if prepared_shared_filter.is_some() {
                        table_writer.write_entry::<::planus::Offset<str>>(4);
                    }
                    if prepared_shared_group.is_some() {
                        table_writer.write_entry::<::planus::Offset<str>>(5);
                    }
                    if prepared_retained_holders.is_some() {
                        table_writer.write_entry::<::planus::Offset<[::planus::Offset<str>]>>(6);
                    }
                    if prepared_reply_shard.is_some() {
                        table_writer.write_entry::<u16>(2);
                    }
                    if prepared_deliver.is_some() {
                        table_writer.write_entry::<bool>(3);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_receipt) = prepared_receipt
                            {
                                object_writer.write::<_, _, 8>(&prepared_receipt);
                            }
                            if let ::core::option::Option::Some(prepared_publisher) =
                                prepared_publisher
                            {
                                object_writer.write::<_, _, 8>(&prepared_publisher);
                            }
                            if let ::core::option::Option::Some(prepared_retained_version) =
                                prepared_retained_version
                            {
                                object_writer.write::<_, _, 8>(&prepared_retained_version);
                            }
                            object_writer.write::<_, _, 4>(&prepared_message);
                            if let ::core::option::Option::Some(prepared_shared_filter) =
                                prepared_shared_filter
                            {
                                object_writer.write::<_, _, 4>(&prepared_shared_filter);
                            }
                            if let ::core::option::Option::Some(prepared_shared_group) =
                                prepared_shared_group
                            {
                                object_writer.write::<_, _, 4>(&prepared_shared_group);
                            }
                            if let ::core::option::Option::Some(prepared_retained_holders) =
                                prepared_retained_holders
                            {
                                object_writer.write::<_, _, 4>(&prepared_retained_holders);
                            }
                            if let ::core::option::Option::Some(prepared_reply_shard) =
                                prepared_reply_shard
                            {
                                object_writer.write::<_, _, 2>(&prepared_reply_shard);
                            }
                            if let ::core::option::Option::Some(prepared_deliver) = prepared_deliver
                            {
                                object_writer.write::<_, _, 1>(&prepared_deliver);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<Publish>> for Publish {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Publish> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<Publish>> for Publish {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Publish>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<Publish> for Publish {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Publish> {
                    Publish::create(
                        builder,
                        &self.message,
                        self.receipt,
                        self.reply_shard,
                        self.deliver,
                        &self.shared_filter,
                        &self.shared_group,
                        &self.retained_holders,
                        self.publisher,
                        self.retained_version,
                    )
                }
            }

            /// Builder for serializing an instance of the [Publish] type.
            ///
            /// Can be created using the [Publish::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct PublishBuilder<State>(State);

            impl PublishBuilder<()> {
                /// Setter for the [`message` field](Publish#structfield.message).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn message<T0>(self, value: T0) -> PublishBuilder<(T0,)>
                where
                    T0: ::planus::WriteAs<::planus::Offset<[u8]>>,
                {
                    PublishBuilder((value,))
                }
            }

            impl<T0> PublishBuilder<(T0,)> {
                /// Setter for the [`receipt` field](Publish#structfield.receipt).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn receipt<T1>(self, value: T1) -> PublishBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0,) = self.0;
                    PublishBuilder((v0, value))
                }

                /// Sets the [`receipt` field](Publish#structfield.receipt) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn receipt_as_default(self) -> PublishBuilder<(T0, ::planus::DefaultValue)> {
                    self.receipt(::planus::DefaultValue)
                }
            }

            impl<T0, T1> PublishBuilder<(T0, T1)> {
                /// Setter for the [`reply_shard` field](Publish#structfield.reply_shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn reply_shard<T2>(self, value: T2) -> PublishBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0, v1) = self.0;
                    PublishBuilder((v0, v1, value))
                }

                /// Sets the [`reply_shard` field](Publish#structfield.reply_shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn reply_shard_as_default(
                    self,
                ) -> PublishBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.reply_shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> PublishBuilder<(T0, T1, T2)> {
                /// Setter for the [`deliver` field](Publish#structfield.deliver).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn deliver<T3>(self, value: T3) -> PublishBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2) = self.0;
                    PublishBuilder((v0, v1, v2, value))
                }

                /// Sets the [`deliver` field](Publish#structfield.deliver) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn deliver_as_default(
                    self,
                ) -> PublishBuilder<(T0, T1, T2, ::planus::DefaultValue)> {
                    self.deliver(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3> PublishBuilder<(T0, T1, T2, T3)> {
                /// Setter for the [`shared_filter` field](Publish#structfield.shared_filter).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shared_filter<T4>(self, value: T4) -> PublishBuilder<(T0, T1, T2, T3, T4)>
                where
                    T4: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                {
                    let (v0, v1, v2, v3) = self.0;
                    PublishBuilder((v0, v1, v2, v3, value))
                }

                /// Sets the [`shared_filter` field](Publish#structfield.shared_filter) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shared_filter_as_null(self) -> PublishBuilder<(T0, T1, T2, T3, ())> {
                    self.shared_filter(())
                }
            }

            impl<T0, T1, T2, T3, T4> PublishBuilder<(T0, T1, T2, T3, T4)> {
                /// Setter for the [`shared_group` field](Publish#structfield.shared_group).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shared_group<T5>(self, value: T5) -> PublishBuilder<(T0, T1, T2, T3, T4, T5)>
                where
                    T5: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                {
                    let (v0, v1, v2, v3, v4) = self.0;
                    PublishBuilder((v0, v1, v2, v3, v4, value))
                }

                /// Sets the [`shared_group` field](Publish#structfield.shared_group) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shared_group_as_null(self) -> PublishBuilder<(T0, T1, T2, T3, T4, ())> {
                    self.shared_group(())
                }
            }

            impl<T0, T1, T2, T3, T4, T5> PublishBuilder<(T0, T1, T2, T3, T4, T5)> {
                /// Setter for the [`retained_holders` field](Publish#structfield.retained_holders).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn retained_holders<T6>(
                    self,
                    value: T6,
                ) -> PublishBuilder<(T0, T1, T2, T3, T4, T5, T6)>
                where
                    T6: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                {
                    let (v0, v1, v2, v3, v4, v5) = self.0;
                    PublishBuilder((v0, v1, v2, v3, v4, v5, value))
                }

                /// Sets the [`retained_holders` field](Publish#structfield.retained_holders) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn retained_holders_as_null(
                    self,
                ) -> PublishBuilder<(T0, T1, T2, T3, T4, T5, ())> {
                    self.retained_holders(())
                }
            }

            impl<T0, T1, T2, T3, T4, T5, T6> PublishBuilder<(T0, T1, T2, T3, T4, T5, T6)> {
                /// Setter for the [`publisher` field](Publish#structfield.publisher).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn publisher<T7>(
                    self,
                    value: T7,
                ) -> PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)>
                where
                    T7: ::planus::WriteAsOptional<u64>,
                {
                    let (v0, v1, v2, v3, v4, v5, v6) = self.0;
                    PublishBuilder((v0, v1, v2, v3, v4, v5, v6, value))
                }

                /// Sets the [`publisher` field](Publish#structfield.publisher) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn publisher_as_null(self) -> PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, ())> {
                    self.publisher(())
                }
            }

            impl<T0, T1, T2, T3, T4, T5, T6, T7> PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)> {
                /// Setter for the [`retained_version` field](Publish#structfield.retained_version).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn retained_version<T8>(
                    self,
                    value: T8,
                ) -> PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)>
                where
                    T8: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0, v1, v2, v3, v4, v5, v6, v7) = self.0;
                    PublishBuilder((v0, v1, v2, v3, v4, v5, v6, v7, value))
                }

                /// Sets the [`retained_version` field](Publish#structfield.retained_version) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn retained_version_as_default(
                    self,
                ) -> PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, ::planus::DefaultValue)>
                {
                    self.retained_version(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4, T5, T6, T7, T8> PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [Publish].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<Publish>
                where
                    Self: ::planus::WriteAsOffset<Publish>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<[u8]>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T5: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T6: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T7: ::planus::WriteAsOptional<u64>,
                    T8: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAs<::planus::Offset<Publish>>
                for PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)>
            {
                type Prepared = ::planus::Offset<Publish>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Publish> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<[u8]>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T5: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T6: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T7: ::planus::WriteAsOptional<u64>,
                    T8: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAsOptional<::planus::Offset<Publish>>
                for PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)>
            {
                type Prepared = ::planus::Offset<Publish>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Publish>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<[u8]>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T5: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T6: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T7: ::planus::WriteAsOptional<u64>,
                    T8: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAsOffset<Publish>
                for PublishBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Publish> {
                    let (v0, v1, v2, v3, v4, v5, v6, v7, v8) = &self.0;
                    Publish::create(builder, v0, v1, v2, v3, v4, v5, v6, v7, v8)
                }
            }

            /// Reference to a deserialized [Publish].
            #[derive(Copy, Clone)]
            pub struct PublishRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> PublishRef<'a> {
                /// Getter for the [`message` field](Publish#structfield.message).
                #[inline]
                pub fn message(&self) -> ::planus::Result<&'a [u8]> {
                    self.0.access_required(0, "Publish", "message")
                }

                /// Getter for the [`receipt` field](Publish#structfield.receipt).
                #[inline]
                pub fn receipt(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(self.0.access(1, "Publish", "receipt")?.unwrap_or(0))
                }

                /// Getter for the [`reply_shard` field](Publish#structfield.reply_shard).
                #[inline]
                pub fn reply_shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(2, "Publish", "reply_shard")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`deliver` field](Publish#structfield.deliver).
                #[inline]
                pub fn deliver(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(3, "Publish", "deliver")?.unwrap_or(true),
                    )
                }

                /// Getter for the [`shared_filter` field](Publish#structfield.shared_filter).
                #[inline]
                pub fn shared_filter(
                    &self,
                ) -> ::planus::Result<::core::option::Option<&'a ::core::primitive::str>>
                {
                    self.0.access(4, "Publish", "shared_filter")
                }

                /// Getter for the [`shared_group` field](Publish#structfield.shared_group).
                #[inline]
                pub fn shared_group(
                    &self,
                ) -> ::planus::Result<::core::option::Option<&'a ::core::primitive::str>>
                {
                    self.0.access(5, "Publish", "shared_group")
                }

                /// Getter for the [`retained_holders` field](Publish#structfield.retained_holders).
                #[inline]
                pub fn retained_holders(
                    &self,
                ) -> ::planus::Result<
                    ::core::option::Option<
                        ::planus::Vector<'a, ::planus::Result<&'a ::core::primitive::str>>,
                    >,
                > {
                    self.0.access(6, "Publish", "retained_holders")
                }

                /// Getter for the [`publisher` field](Publish#structfield.publisher).
                #[inline]
                pub fn publisher(&self) -> ::planus::Result<::core::option::Option<u64>> {
                    self.0.access(7, "Publish", "publisher")
                }

                /// Getter for the [`retained_version` field](Publish#structfield.retained_version).
                #[inline]
                pub fn retained_version(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(8, "Publish", "retained_version")?.unwrap_or(0),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for PublishRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("PublishRef");
                    f.field("message", &self.message());
                    f.field("receipt", &self.receipt());
                    f.field("reply_shard", &self.reply_shard());
                    f.field("deliver", &self.deliver());
                    if let ::core::option::Option::Some(field_shared_filter) =
                        self.shared_filter().transpose()
                    {
                        f.field("shared_filter", &field_shared_filter);
                    }
                    if let ::core::option::Option::Some(field_shared_group) =
                        self.shared_group().transpose()
                    {
                        f.field("shared_group", &field_shared_group);
                    }
                    if let ::core::option::Option::Some(field_retained_holders) =
                        self.retained_holders().transpose()
                    {
                        f.field("retained_holders", &field_retained_holders);
                    }
                    if let ::core::option::Option::Some(field_publisher) =
                        self.publisher().transpose()
                    {
                        f.field("publisher", &field_publisher);
                    }
                    f.field("retained_version", &self.retained_version());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<PublishRef<'a>> for Publish {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: PublishRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        message: value.message()?.to_vec(),
                        receipt: ::core::convert::TryInto::try_into(value.receipt()?)?,
                        reply_shard: ::core::convert::TryInto::try_into(value.reply_shard()?)?,
                        deliver: ::core::convert::TryInto::try_into(value.deliver()?)?,
                        shared_filter: value.shared_filter()?.map(::core::convert::Into::into),
                        shared_group: value.shared_group()?.map(::core::convert::Into::into),
                        retained_holders: if let ::core::option::Option::Some(retained_holders) =
                            value.retained_holders()?
                        {
                            ::core::option::Option::Some(retained_holders.to_vec_result()?)
                        } else {
                            ::core::option::Option::None
                        },
                        publisher: if let ::core::option::Option::Some(publisher) =
                            value.publisher()?
                        {
                            ::core::option::Option::Some(::core::convert::TryInto::try_into(
                                publisher,
                            )?)
                        } else {
                            ::core::option::Option::None
                        },
                        retained_version: ::core::convert::TryInto::try_into(
                            value.retained_version()?,
                        )?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for PublishRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for PublishRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[PublishRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<Publish>> for Publish {
                type Value = ::planus::Offset<Publish>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<Publish>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for PublishRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[PublishRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `Receipt` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `Receipt` in the file `schema/link.fbs:75`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct Receipt {
                /// The field `token` in the table `Receipt`
                pub token: u64,
                /// The field `shard` in the table `Receipt`
                pub shard: u16,
                /// The field `ok` in the table `Receipt`
                pub ok: bool,
                /// The field `matched` in the table `Receipt`
                pub matched: bool,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for Receipt {
                fn default() -> Self {
                    Self { token: 0, shard: 0, ok: false, matched: true }
                }
            }

            impl Receipt {
                /// Creates a [ReceiptBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> ReceiptBuilder<()> {
                    ReceiptBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_token: impl ::planus::WriteAsDefault<u64, u64>,
                    field_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_ok: impl ::planus::WriteAsDefault<bool, bool>,
                    field_matched: impl ::planus::WriteAsDefault<bool, bool>,
                ) -> ::planus::Offset<Self> {
                    let prepared_token = field_token.prepare(builder, &0);
                    let prepared_shard = field_shard.prepare(builder, &0);
                    let prepared_ok = field_ok.prepare(builder, &false);
                    let prepared_matched = field_matched.prepare(builder, &true);

                    let mut table_writer: ::planus::table_writer::TableWriter<12> =
                        ::core::default::Default::default();
                    if prepared_token.is_some() {
                        table_writer.write_entry::<u64>(0);
                    }
                    if prepared_shard.is_some() {
                        table_writer.write_entry::<u16>(1);
                    }
                    if prepared_ok.is_some() {
                        table_writer.write_entry::<bool>(2);
                    }
                    if prepared_matched.is_some() {
                        table_writer.write_entry::<bool>(3);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_token) = prepared_token {
                                object_writer.write::<_, _, 8>(&prepared_token);
                            }
                            if let ::core::option::Option::Some(prepared_shard) = prepared_shard {
                                object_writer.write::<_, _, 2>(&prepared_shard);
                            }
                            if let ::core::option::Option::Some(prepared_ok) = prepared_ok {
                                object_writer.write::<_, _, 1>(&prepared_ok);
                            }
                            if let ::core::option::Option::Some(prepared_matched) = prepared_matched
                            {
                                object_writer.write::<_, _, 1>(&prepared_matched);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<Receipt>> for Receipt {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Receipt> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<Receipt>> for Receipt {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Receipt>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<Receipt> for Receipt {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Receipt> {
                    Receipt::create(builder, self.token, self.shard, self.ok, self.matched)
                }
            }

            /// Builder for serializing an instance of the [Receipt] type.
            ///
            /// Can be created using the [Receipt::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct ReceiptBuilder<State>(State);

            impl ReceiptBuilder<()> {
                /// Setter for the [`token` field](Receipt#structfield.token).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn token<T0>(self, value: T0) -> ReceiptBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u64, u64>,
                {
                    ReceiptBuilder((value,))
                }

                /// Sets the [`token` field](Receipt#structfield.token) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn token_as_default(self) -> ReceiptBuilder<(::planus::DefaultValue,)> {
                    self.token(::planus::DefaultValue)
                }
            }

            impl<T0> ReceiptBuilder<(T0,)> {
                /// Setter for the [`shard` field](Receipt#structfield.shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard<T1>(self, value: T1) -> ReceiptBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0,) = self.0;
                    ReceiptBuilder((v0, value))
                }

                /// Sets the [`shard` field](Receipt#structfield.shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard_as_default(self) -> ReceiptBuilder<(T0, ::planus::DefaultValue)> {
                    self.shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1> ReceiptBuilder<(T0, T1)> {
                /// Setter for the [`ok` field](Receipt#structfield.ok).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn ok<T2>(self, value: T2) -> ReceiptBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1) = self.0;
                    ReceiptBuilder((v0, v1, value))
                }

                /// Sets the [`ok` field](Receipt#structfield.ok) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn ok_as_default(self) -> ReceiptBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.ok(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> ReceiptBuilder<(T0, T1, T2)> {
                /// Setter for the [`matched` field](Receipt#structfield.matched).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn matched<T3>(self, value: T3) -> ReceiptBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2) = self.0;
                    ReceiptBuilder((v0, v1, v2, value))
                }

                /// Sets the [`matched` field](Receipt#structfield.matched) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn matched_as_default(
                    self,
                ) -> ReceiptBuilder<(T0, T1, T2, ::planus::DefaultValue)> {
                    self.matched(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3> ReceiptBuilder<(T0, T1, T2, T3)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [Receipt].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<Receipt>
                where
                    Self: ::planus::WriteAsOffset<Receipt>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAs<::planus::Offset<Receipt>>
                for ReceiptBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<Receipt>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Receipt> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOptional<::planus::Offset<Receipt>>
                for ReceiptBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<Receipt>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Receipt>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOffset<Receipt> for ReceiptBuilder<(T0, T1, T2, T3)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Receipt> {
                    let (v0, v1, v2, v3) = &self.0;
                    Receipt::create(builder, v0, v1, v2, v3)
                }
            }

            /// Reference to a deserialized [Receipt].
            #[derive(Copy, Clone)]
            pub struct ReceiptRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> ReceiptRef<'a> {
                /// Getter for the [`token` field](Receipt#structfield.token).
                #[inline]
                pub fn token(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(self.0.access(0, "Receipt", "token")?.unwrap_or(0))
                }

                /// Getter for the [`shard` field](Receipt#structfield.shard).
                #[inline]
                pub fn shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(self.0.access(1, "Receipt", "shard")?.unwrap_or(0))
                }

                /// Getter for the [`ok` field](Receipt#structfield.ok).
                #[inline]
                pub fn ok(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(self.0.access(2, "Receipt", "ok")?.unwrap_or(false))
                }

                /// Getter for the [`matched` field](Receipt#structfield.matched).
                #[inline]
                pub fn matched(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(3, "Receipt", "matched")?.unwrap_or(true),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for ReceiptRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("ReceiptRef");
                    f.field("token", &self.token());
                    f.field("shard", &self.shard());
                    f.field("ok", &self.ok());
                    f.field("matched", &self.matched());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<ReceiptRef<'a>> for Receipt {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: ReceiptRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        token: ::core::convert::TryInto::try_into(value.token()?)?,
                        shard: ::core::convert::TryInto::try_into(value.shard()?)?,
                        ok: ::core::convert::TryInto::try_into(value.ok()?)?,
                        matched: ::core::convert::TryInto::try_into(value.matched()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for ReceiptRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for ReceiptRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[ReceiptRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<Receipt>> for Receipt {
                type Value = ::planus::Offset<Receipt>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<Receipt>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for ReceiptRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[ReceiptRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `Pace` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `Pace` in the file `schema/link.fbs:86`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct Pace {
                /// The field `shard` in the table `Pace`
                pub shard: u16,
                /// The field `conn` in the table `Pace`
                pub conn: u64,
                /// The field `pause` in the table `Pace`
                pub pause: bool,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for Pace {
                fn default() -> Self {
                    Self { shard: 0, conn: 0, pause: false }
                }
            }

            impl Pace {
                /// Creates a [PaceBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> PaceBuilder<()> {
                    PaceBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_conn: impl ::planus::WriteAsDefault<u64, u64>,
                    field_pause: impl ::planus::WriteAsDefault<bool, bool>,
                ) -> ::planus::Offset<Self> {
                    let prepared_shard = field_shard.prepare(builder, &0);
                    let prepared_conn = field_conn.prepare(builder, &0);
                    let prepared_pause = field_pause.prepare(builder, &false);

                    let mut table_writer: ::planus::table_writer::TableWriter<10> =
                        ::core::default::Default::default();
                    if prepared_conn.is_some() {
                        table_writer.write_entry::<u64>(1);
                    }
                    if prepared_shard.is_some() {
                        table_writer.write_entry::<u16>(0);
                    }
                    if prepared_pause.is_some() {
                        table_writer.write_entry::<bool>(2);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_conn) = prepared_conn {
                                object_writer.write::<_, _, 8>(&prepared_conn);
                            }
                            if let ::core::option::Option::Some(prepared_shard) = prepared_shard {
                                object_writer.write::<_, _, 2>(&prepared_shard);
                            }
                            if let ::core::option::Option::Some(prepared_pause) = prepared_pause {
                                object_writer.write::<_, _, 1>(&prepared_pause);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<Pace>> for Pace {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Pace> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<Pace>> for Pace {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Pace>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<Pace> for Pace {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Pace> {
                    Pace::create(builder, self.shard, self.conn, self.pause)
                }
            }

            /// Builder for serializing an instance of the [Pace] type.
            ///
            /// Can be created using the [Pace::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct PaceBuilder<State>(State);

            impl PaceBuilder<()> {
                /// Setter for the [`shard` field](Pace#structfield.shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard<T0>(self, value: T0) -> PaceBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u16, u16>,
                {
                    PaceBuilder((value,))
                }

                /// Sets the [`shard` field](Pace#structfield.shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard_as_default(self) -> PaceBuilder<(::planus::DefaultValue,)> {
                    self.shard(::planus::DefaultValue)
                }
            }

            impl<T0> PaceBuilder<(T0,)> {
                /// Setter for the [`conn` field](Pace#structfield.conn).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn conn<T1>(self, value: T1) -> PaceBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0,) = self.0;
                    PaceBuilder((v0, value))
                }

                /// Sets the [`conn` field](Pace#structfield.conn) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn conn_as_default(self) -> PaceBuilder<(T0, ::planus::DefaultValue)> {
                    self.conn(::planus::DefaultValue)
                }
            }

            impl<T0, T1> PaceBuilder<(T0, T1)> {
                /// Setter for the [`pause` field](Pace#structfield.pause).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn pause<T2>(self, value: T2) -> PaceBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1) = self.0;
                    PaceBuilder((v0, v1, value))
                }

                /// Sets the [`pause` field](Pace#structfield.pause) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn pause_as_default(self) -> PaceBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.pause(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> PaceBuilder<(T0, T1, T2)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [Pace].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<Pace>
                where
                    Self: ::planus::WriteAsOffset<Pace>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAs<::planus::Offset<Pace>> for PaceBuilder<(T0, T1, T2)>
            {
                type Prepared = ::planus::Offset<Pace>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Pace> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOptional<::planus::Offset<Pace>> for PaceBuilder<(T0, T1, T2)>
            {
                type Prepared = ::planus::Offset<Pace>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Pace>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOffset<Pace> for PaceBuilder<(T0, T1, T2)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Pace> {
                    let (v0, v1, v2) = &self.0;
                    Pace::create(builder, v0, v1, v2)
                }
            }

            /// Reference to a deserialized [Pace].
            #[derive(Copy, Clone)]
            pub struct PaceRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> PaceRef<'a> {
                /// Getter for the [`shard` field](Pace#structfield.shard).
                #[inline]
                pub fn shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(self.0.access(0, "Pace", "shard")?.unwrap_or(0))
                }

                /// Getter for the [`conn` field](Pace#structfield.conn).
                #[inline]
                pub fn conn(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(self.0.access(1, "Pace", "conn")?.unwrap_or(0))
                }

                /// Getter for the [`pause` field](Pace#structfield.pause).
                #[inline]
                pub fn pause(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(self.0.access(2, "Pace", "pause")?.unwrap_or(false))
                }
            }

            impl<'a> ::core::fmt::Debug for PaceRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("PaceRef");
                    f.field("shard", &self.shard());
                    f.field("conn", &self.conn());
                    f.field("pause", &self.pause());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<PaceRef<'a>> for Pace {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: PaceRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        shard: ::core::convert::TryInto::try_into(value.shard()?)?,
                        conn: ::core::convert::TryInto::try_into(value.conn()?)?,
                        pause: ::core::convert::TryInto::try_into(value.pause()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for PaceRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for PaceRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location("[PaceRef]", "get", buffer.offset_from_start)
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<Pace>> for Pace {
                type Value = ::planus::Offset<Pace>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<Pace>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for PaceRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[PaceRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `TakeoverRequest` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `TakeoverRequest` in the file `schema/link.fbs:93`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct TakeoverRequest {
                /// The field `client_id` in the table `TakeoverRequest`
                pub client_id: ::planus::alloc::string::String,
                /// The field `request` in the table `TakeoverRequest`
                pub request: u64,
                /// The field `reply_shard` in the table `TakeoverRequest`
                pub reply_shard: u16,
                /// The field `clean_start` in the table `TakeoverRequest`
                pub clean_start: bool,
                /// The field `username` in the table `TakeoverRequest`
                pub username: ::core::option::Option<::planus::alloc::string::String>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for TakeoverRequest {
                fn default() -> Self {
                    Self {
                        client_id: ::core::default::Default::default(),
                        request: 0,
                        reply_shard: 0,
                        clean_start: false,
                        username: ::core::default::Default::default(),
                    }
                }
            }

            impl TakeoverRequest {
                /// Creates a [TakeoverRequestBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> TakeoverRequestBuilder<()> {
                    TakeoverRequestBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_client_id: impl ::planus::WriteAs<::planus::Offset<str>>,
                    field_request: impl ::planus::WriteAsDefault<u64, u64>,
                    field_reply_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_clean_start: impl ::planus::WriteAsDefault<bool, bool>,
                    field_username: impl ::planus::WriteAsOptional<
                        ::planus::Offset<::core::primitive::str>,
                    >,
                ) -> ::planus::Offset<Self> {
                    let prepared_client_id = field_client_id.prepare(builder);
                    let prepared_request = field_request.prepare(builder, &0);
                    let prepared_reply_shard = field_reply_shard.prepare(builder, &0);
                    let prepared_clean_start = field_clean_start.prepare(builder, &false);
                    let prepared_username = field_username.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<14> =
                        ::core::default::Default::default();
                    if prepared_request.is_some() {
                        table_writer.write_entry::<u64>(1);
                    }
                    table_writer.write_entry::<::planus::Offset<str>>(0);
                    if prepared_username.is_some() {
                        table_writer.write_entry::<::planus::Offset<str>>(4);
                    }
                    if prepared_reply_shard.is_some() {
                        table_writer.write_entry::<u16>(2);
                    }
                    if prepared_clean_start.is_some() {
                        table_writer.write_entry::<bool>(3);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_request) = prepared_request
                            {
                                object_writer.write::<_, _, 8>(&prepared_request);
                            }
                            object_writer.write::<_, _, 4>(&prepared_client_id);
                            if let ::core::option::Option::Some(prepared_username) =
                                prepared_username
                            {
                                object_writer.write::<_, _, 4>(&prepared_username);
                            }
                            if let ::core::option::Option::Some(prepared_reply_shard) =
                                prepared_reply_shard
                            {
                                object_writer.write::<_, _, 2>(&prepared_reply_shard);
                            }
                            if let ::core::option::Option::Some(prepared_clean_start) =
                                prepared_clean_start
                            {
                                object_writer.write::<_, _, 1>(&prepared_clean_start);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<TakeoverRequest>> for TakeoverRequest {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TakeoverRequest> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<TakeoverRequest>> for TakeoverRequest {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<TakeoverRequest>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<TakeoverRequest> for TakeoverRequest {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TakeoverRequest> {
                    TakeoverRequest::create(
                        builder,
                        &self.client_id,
                        self.request,
                        self.reply_shard,
                        self.clean_start,
                        &self.username,
                    )
                }
            }

            /// Builder for serializing an instance of the [TakeoverRequest] type.
            ///
            /// Can be created using the [TakeoverRequest::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct TakeoverRequestBuilder<State>(State);

            impl TakeoverRequestBuilder<()> {
                /// Setter for the [`client_id` field](TakeoverRequest#structfield.client_id).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn client_id<T0>(self, value: T0) -> TakeoverRequestBuilder<(T0,)>
                where
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                {
                    TakeoverRequestBuilder((value,))
                }
            }

            impl<T0> TakeoverRequestBuilder<(T0,)> {
                /// Setter for the [`request` field](TakeoverRequest#structfield.request).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request<T1>(self, value: T1) -> TakeoverRequestBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0,) = self.0;
                    TakeoverRequestBuilder((v0, value))
                }

                /// Sets the [`request` field](TakeoverRequest#structfield.request) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request_as_default(
                    self,
                ) -> TakeoverRequestBuilder<(T0, ::planus::DefaultValue)> {
                    self.request(::planus::DefaultValue)
                }
            }

            impl<T0, T1> TakeoverRequestBuilder<(T0, T1)> {
                /// Setter for the [`reply_shard` field](TakeoverRequest#structfield.reply_shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn reply_shard<T2>(self, value: T2) -> TakeoverRequestBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0, v1) = self.0;
                    TakeoverRequestBuilder((v0, v1, value))
                }

                /// Sets the [`reply_shard` field](TakeoverRequest#structfield.reply_shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn reply_shard_as_default(
                    self,
                ) -> TakeoverRequestBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.reply_shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> TakeoverRequestBuilder<(T0, T1, T2)> {
                /// Setter for the [`clean_start` field](TakeoverRequest#structfield.clean_start).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn clean_start<T3>(self, value: T3) -> TakeoverRequestBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2) = self.0;
                    TakeoverRequestBuilder((v0, v1, v2, value))
                }

                /// Sets the [`clean_start` field](TakeoverRequest#structfield.clean_start) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn clean_start_as_default(
                    self,
                ) -> TakeoverRequestBuilder<(T0, T1, T2, ::planus::DefaultValue)> {
                    self.clean_start(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3> TakeoverRequestBuilder<(T0, T1, T2, T3)> {
                /// Setter for the [`username` field](TakeoverRequest#structfield.username).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn username<T4>(self, value: T4) -> TakeoverRequestBuilder<(T0, T1, T2, T3, T4)>
                where
                    T4: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                {
                    let (v0, v1, v2, v3) = self.0;
                    TakeoverRequestBuilder((v0, v1, v2, v3, value))
                }

                /// Sets the [`username` field](TakeoverRequest#structfield.username) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn username_as_null(self) -> TakeoverRequestBuilder<(T0, T1, T2, T3, ())> {
                    self.username(())
                }
            }

            impl<T0, T1, T2, T3, T4> TakeoverRequestBuilder<(T0, T1, T2, T3, T4)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [TakeoverRequest].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TakeoverRequest>
                where
                    Self: ::planus::WriteAsOffset<TakeoverRequest>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAs<::planus::Offset<TakeoverRequest>>
                for TakeoverRequestBuilder<(T0, T1, T2, T3, T4)>
            {
                type Prepared = ::planus::Offset<TakeoverRequest>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TakeoverRequest> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAsOptional<::planus::Offset<TakeoverRequest>>
                for TakeoverRequestBuilder<(T0, T1, T2, T3, T4)>
            {
                type Prepared = ::planus::Offset<TakeoverRequest>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<TakeoverRequest>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAsOffset<TakeoverRequest>
                for TakeoverRequestBuilder<(T0, T1, T2, T3, T4)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TakeoverRequest> {
                    let (v0, v1, v2, v3, v4) = &self.0;
                    TakeoverRequest::create(builder, v0, v1, v2, v3, v4)
                }
            }

            /// Reference to a deserialized [TakeoverRequest].
            #[derive(Copy, Clone)]
            pub struct TakeoverRequestRef<'a>(
                #[allow(dead_code)] ::planus::table_reader::Table<'a>,
            );

            impl<'a> TakeoverRequestRef<'a> {
                /// Getter for the [`client_id` field](TakeoverRequest#structfield.client_id).
                #[inline]
                pub fn client_id(&self) -> ::planus::Result<&'a ::core::primitive::str> {
                    self.0.access_required(0, "TakeoverRequest", "client_id")
                }

                /// Getter for the [`request` field](TakeoverRequest#structfield.request).
                #[inline]
                pub fn request(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(1, "TakeoverRequest", "request")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`reply_shard` field](TakeoverRequest#structfield.reply_shard).
                #[inline]
                pub fn reply_shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(2, "TakeoverRequest", "reply_shard")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`clean_start` field](TakeoverRequest#structfield.clean_start).
                #[inline]
                pub fn clean_start(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(3, "TakeoverRequest", "clean_start")?.unwrap_or(false),
                    )
                }

                /// Getter for the [`username` field](TakeoverRequest#structfield.username).
                #[inline]
                pub fn username(
                    &self,
                ) -> ::planus::Result<::core::option::Option<&'a ::core::primitive::str>>
                {
                    self.0.access(4, "TakeoverRequest", "username")
                }
            }

            impl<'a> ::core::fmt::Debug for TakeoverRequestRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("TakeoverRequestRef");
                    f.field("client_id", &self.client_id());
                    f.field("request", &self.request());
                    f.field("reply_shard", &self.reply_shard());
                    f.field("clean_start", &self.clean_start());
                    if let ::core::option::Option::Some(field_username) =
                        self.username().transpose()
                    {
                        f.field("username", &field_username);
                    }
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<TakeoverRequestRef<'a>> for TakeoverRequest {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: TakeoverRequestRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        client_id: ::core::convert::Into::into(value.client_id()?),
                        request: ::core::convert::TryInto::try_into(value.request()?)?,
                        reply_shard: ::core::convert::TryInto::try_into(value.reply_shard()?)?,
                        clean_start: ::core::convert::TryInto::try_into(value.clean_start()?)?,
                        username: value.username()?.map(::core::convert::Into::into),
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for TakeoverRequestRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for TakeoverRequestRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[TakeoverRequestRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<TakeoverRequest>> for TakeoverRequest {
                type Value = ::planus::Offset<TakeoverRequest>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<TakeoverRequest>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for TakeoverRequestRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[TakeoverRequestRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `SessionMessage` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `SessionMessage` in the file `schema/link.fbs:105`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct SessionMessage {
                /// The field `seq` in the table `SessionMessage`
                pub seq: u64,
                /// The field `record` in the table `SessionMessage`
                pub record: ::planus::alloc::vec::Vec<u8>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for SessionMessage {
                fn default() -> Self {
                    Self { seq: 0, record: ::core::default::Default::default() }
                }
            }

            impl SessionMessage {
                /// Creates a [SessionMessageBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> SessionMessageBuilder<()> {
                    SessionMessageBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_seq: impl ::planus::WriteAsDefault<u64, u64>,
                    field_record: impl ::planus::WriteAs<::planus::Offset<[u8]>>,
                ) -> ::planus::Offset<Self> {
                    let prepared_seq = field_seq.prepare(builder, &0);
                    let prepared_record = field_record.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<8> =
                        ::core::default::Default::default();
                    if prepared_seq.is_some() {
                        table_writer.write_entry::<u64>(0);
                    }
                    table_writer.write_entry::<::planus::Offset<[u8]>>(1);

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_seq) = prepared_seq {
                                object_writer.write::<_, _, 8>(&prepared_seq);
                            }
                            object_writer.write::<_, _, 4>(&prepared_record);
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<SessionMessage>> for SessionMessage {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionMessage> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<SessionMessage>> for SessionMessage {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<SessionMessage>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<SessionMessage> for SessionMessage {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionMessage> {
                    SessionMessage::create(builder, self.seq, &self.record)
                }
            }

            /// Builder for serializing an instance of the [SessionMessage] type.
            ///
            /// Can be created using the [SessionMessage::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct SessionMessageBuilder<State>(State);

            impl SessionMessageBuilder<()> {
                /// Setter for the [`seq` field](SessionMessage#structfield.seq).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn seq<T0>(self, value: T0) -> SessionMessageBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u64, u64>,
                {
                    SessionMessageBuilder((value,))
                }

                /// Sets the [`seq` field](SessionMessage#structfield.seq) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn seq_as_default(self) -> SessionMessageBuilder<(::planus::DefaultValue,)> {
                    self.seq(::planus::DefaultValue)
                }
            }

            impl<T0> SessionMessageBuilder<(T0,)> {
                /// Setter for the [`record` field](SessionMessage#structfield.record).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn record<T1>(self, value: T1) -> SessionMessageBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAs<::planus::Offset<[u8]>>,
                {
                    let (v0,) = self.0;
                    SessionMessageBuilder((v0, value))
                }
            }

            impl<T0, T1> SessionMessageBuilder<(T0, T1)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [SessionMessage].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionMessage>
                where
                    Self: ::planus::WriteAsOffset<SessionMessage>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAs<::planus::Offset<[u8]>>,
                > ::planus::WriteAs<::planus::Offset<SessionMessage>>
                for SessionMessageBuilder<(T0, T1)>
            {
                type Prepared = ::planus::Offset<SessionMessage>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionMessage> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAs<::planus::Offset<[u8]>>,
                > ::planus::WriteAsOptional<::planus::Offset<SessionMessage>>
                for SessionMessageBuilder<(T0, T1)>
            {
                type Prepared = ::planus::Offset<SessionMessage>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<SessionMessage>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAs<::planus::Offset<[u8]>>,
                > ::planus::WriteAsOffset<SessionMessage> for SessionMessageBuilder<(T0, T1)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionMessage> {
                    let (v0, v1) = &self.0;
                    SessionMessage::create(builder, v0, v1)
                }
            }

            /// Reference to a deserialized [SessionMessage].
            #[derive(Copy, Clone)]
            pub struct SessionMessageRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> SessionMessageRef<'a> {
                /// Getter for the [`seq` field](SessionMessage#structfield.seq).
                #[inline]
                pub fn seq(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(0, "SessionMessage", "seq")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`record` field](SessionMessage#structfield.record).
                #[inline]
                pub fn record(&self) -> ::planus::Result<&'a [u8]> {
                    self.0.access_required(1, "SessionMessage", "record")
                }
            }

            impl<'a> ::core::fmt::Debug for SessionMessageRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("SessionMessageRef");
                    f.field("seq", &self.seq());
                    f.field("record", &self.record());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<SessionMessageRef<'a>> for SessionMessage {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: SessionMessageRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        seq: ::core::convert::TryInto::try_into(value.seq()?)?,
                        record: value.record()?.to_vec(),
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for SessionMessageRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for SessionMessageRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[SessionMessageRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<SessionMessage>> for SessionMessage {
                type Value = ::planus::Offset<SessionMessage>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<SessionMessage>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for SessionMessageRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[SessionMessageRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `SessionTransfer` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `SessionTransfer` in the file `schema/link.fbs:112`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct SessionTransfer {
                /// The field `client_id` in the table `SessionTransfer`
                pub client_id: ::planus::alloc::string::String,
                /// The field `request` in the table `SessionTransfer`
                pub request: u64,
                /// The field `shard` in the table `SessionTransfer`
                pub shard: u16,
                /// The field `session` in the table `SessionTransfer`
                pub session: ::core::option::Option<::planus::alloc::vec::Vec<u8>>,
                /// The field `messages` in the table `SessionTransfer`
                pub messages:
                    ::core::option::Option<::planus::alloc::vec::Vec<self::SessionMessage>>,
                /// The field `incoming_qos2` in the table `SessionTransfer`
                pub incoming_qos2: ::core::option::Option<::planus::alloc::vec::Vec<u16>>,
                /// The field `busy` in the table `SessionTransfer`
                pub busy: bool,
                /// The field `other_user` in the table `SessionTransfer`
                pub other_user: bool,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for SessionTransfer {
                fn default() -> Self {
                    Self {
                        client_id: ::core::default::Default::default(),
                        request: 0,
                        shard: 0,
                        session: ::core::default::Default::default(),
                        messages: ::core::default::Default::default(),
                        incoming_qos2: ::core::default::Default::default(),
                        busy: false,
                        other_user: false,
                    }
                }
            }

            impl SessionTransfer {
                /// Creates a [SessionTransferBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> SessionTransferBuilder<()> {
                    SessionTransferBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_client_id: impl ::planus::WriteAs<::planus::Offset<str>>,
                    field_request: impl ::planus::WriteAsDefault<u64, u64>,
                    field_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_session: impl ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                    field_messages: impl ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::SessionMessage>]>,
                    >,
                    field_incoming_qos2: impl ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                    field_busy: impl ::planus::WriteAsDefault<bool, bool>,
                    field_other_user: impl ::planus::WriteAsDefault<bool, bool>,
                ) -> ::planus::Offset<Self> {
                    let prepared_client_id = field_client_id.prepare(builder);
                    let prepared_request = field_request.prepare(builder, &0);
                    let prepared_shard = field_shard.prepare(builder, &0);
                    let prepared_session = field_session.prepare(builder);
                    let prepared_messages = field_messages.prepare(builder);
                    let prepared_incoming_qos2 = field_incoming_qos2.prepare(builder);
                    let prepared_busy = field_busy.prepare(builder, &false);
                    let prepared_other_user = field_other_user.prepare(builder, &false);

                    let mut table_writer: ::planus::table_writer::TableWriter<20> =
                        ::core::default::Default::default();
                    if prepared_request.is_some() {
                        table_writer.write_entry::<u64>(1);
                    }
                    table_writer.write_entry::<::planus::Offset<str>>(0);
                    if prepared_session.is_some() {
                        table_writer.write_entry::<::planus::Offset<[u8]>>(3);
                    }
                    if prepared_messages.is_some() {
                        table_writer.write_entry::<::planus::Offset<[::planus::Offset<self::SessionMessage>]>>(4);
                    }
                    if prepared_incoming_qos2.is_some() {
                        table_writer.write_entry::<::planus::Offset<[u16]>>(5);
                    }
                    if prepared_shard.is_some() {
                        table_writer.write_entry::<u16>(2);
                    }
                    if prepared_busy.is_some() {
                        table_writer.write_entry::<bool>(6);
                    }
                    if prepared_other_user.is_some() {
                        table_writer.write_entry::<bool>(7);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_request) = prepared_request
                            {
                                object_writer.write::<_, _, 8>(&prepared_request);
                            }
                            object_writer.write::<_, _, 4>(&prepared_client_id);
                            if let ::core::option::Option::Some(prepared_session) = prepared_session
                            {
                                object_writer.write::<_, _, 4>(&prepared_session);
                            }
                            if let ::core::option::Option::Some(prepared_messages) =
                                prepared_messages
                            {
                                object_writer.write::<_, _, 4>(&prepared_messages);
                            }
                            if let ::core::option::Option::Some(prepared_incoming_qos2) =
                                prepared_incoming_qos2
                            {
                                object_writer.write::<_, _, 4>(&prepared_incoming_qos2);
                            }
                            if let ::core::option::Option::Some(prepared_shard) = prepared_shard {
                                object_writer.write::<_, _, 2>(&prepared_shard);
                            }
                            if let ::core::option::Option::Some(prepared_busy) = prepared_busy {
                                object_writer.write::<_, _, 1>(&prepared_busy);
                            }
                            if let ::core::option::Option::Some(prepared_other_user) =
                                prepared_other_user
                            {
                                object_writer.write::<_, _, 1>(&prepared_other_user);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<SessionTransfer>> for SessionTransfer {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionTransfer> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<SessionTransfer>> for SessionTransfer {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<SessionTransfer>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<SessionTransfer> for SessionTransfer {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionTransfer> {
                    SessionTransfer::create(
                        builder,
                        &self.client_id,
                        self.request,
                        self.shard,
                        &self.session,
                        &self.messages,
                        &self.incoming_qos2,
                        self.busy,
                        self.other_user,
                    )
                }
            }

            /// Builder for serializing an instance of the [SessionTransfer] type.
            ///
            /// Can be created using the [SessionTransfer::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct SessionTransferBuilder<State>(State);

            impl SessionTransferBuilder<()> {
                /// Setter for the [`client_id` field](SessionTransfer#structfield.client_id).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn client_id<T0>(self, value: T0) -> SessionTransferBuilder<(T0,)>
                where
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                {
                    SessionTransferBuilder((value,))
                }
            }

            impl<T0> SessionTransferBuilder<(T0,)> {
                /// Setter for the [`request` field](SessionTransfer#structfield.request).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request<T1>(self, value: T1) -> SessionTransferBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0,) = self.0;
                    SessionTransferBuilder((v0, value))
                }

                /// Sets the [`request` field](SessionTransfer#structfield.request) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request_as_default(
                    self,
                ) -> SessionTransferBuilder<(T0, ::planus::DefaultValue)> {
                    self.request(::planus::DefaultValue)
                }
            }

            impl<T0, T1> SessionTransferBuilder<(T0, T1)> {
                /// Setter for the [`shard` field](SessionTransfer#structfield.shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard<T2>(self, value: T2) -> SessionTransferBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0, v1) = self.0;
                    SessionTransferBuilder((v0, v1, value))
                }

                /// Sets the [`shard` field](SessionTransfer#structfield.shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard_as_default(
                    self,
                ) -> SessionTransferBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> SessionTransferBuilder<(T0, T1, T2)> {
                /// Setter for the [`session` field](SessionTransfer#structfield.session).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn session<T3>(self, value: T3) -> SessionTransferBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                {
                    let (v0, v1, v2) = self.0;
                    SessionTransferBuilder((v0, v1, v2, value))
                }

                /// Sets the [`session` field](SessionTransfer#structfield.session) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn session_as_null(self) -> SessionTransferBuilder<(T0, T1, T2, ())> {
                    self.session(())
                }
            }

            impl<T0, T1, T2, T3> SessionTransferBuilder<(T0, T1, T2, T3)> {
                /// Setter for the [`messages` field](SessionTransfer#structfield.messages).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn messages<T4>(self, value: T4) -> SessionTransferBuilder<(T0, T1, T2, T3, T4)>
                where
                    T4: ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::SessionMessage>]>,
                    >,
                {
                    let (v0, v1, v2, v3) = self.0;
                    SessionTransferBuilder((v0, v1, v2, v3, value))
                }

                /// Sets the [`messages` field](SessionTransfer#structfield.messages) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn messages_as_null(self) -> SessionTransferBuilder<(T0, T1, T2, T3, ())> {
                    self.messages(())
                }
            }

            impl<T0, T1, T2, T3, T4> SessionTransferBuilder<(T0, T1, T2, T3, T4)> {
                /// Setter for the [`incoming_qos2` field](SessionTransfer#structfield.incoming_qos2).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn incoming_qos2<T5>(
                    self,
                    value: T5,
                ) -> SessionTransferBuilder<(T0, T1, T2, T3, T4, T5)>
                where
                    T5: ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                {
                    let (v0, v1, v2, v3, v4) = self.0;
                    SessionTransferBuilder((v0, v1, v2, v3, v4, value))
                }

                /// Sets the [`incoming_qos2` field](SessionTransfer#structfield.incoming_qos2) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn incoming_qos2_as_null(
                    self,
                ) -> SessionTransferBuilder<(T0, T1, T2, T3, T4, ())> {
                    self.incoming_qos2(())
                }
            }

            impl<T0, T1, T2, T3, T4, T5> SessionTransferBuilder<(T0, T1, T2, T3, T4, T5)> {
                /// Setter for the [`busy` field](SessionTransfer#structfield.busy).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn busy<T6>(
                    self,
                    value: T6,
                ) -> SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, T6)>
                where
                    T6: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2, v3, v4, v5) = self.0;
                    SessionTransferBuilder((v0, v1, v2, v3, v4, v5, value))
                }

                /// Sets the [`busy` field](SessionTransfer#structfield.busy) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn busy_as_default(
                    self,
                ) -> SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, ::planus::DefaultValue)>
                {
                    self.busy(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4, T5, T6> SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, T6)> {
                /// Setter for the [`other_user` field](SessionTransfer#structfield.other_user).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn other_user<T7>(
                    self,
                    value: T7,
                ) -> SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)>
                where
                    T7: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2, v3, v4, v5, v6) = self.0;
                    SessionTransferBuilder((v0, v1, v2, v3, v4, v5, v6, value))
                }

                /// Sets the [`other_user` field](SessionTransfer#structfield.other_user) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn other_user_as_default(
                    self,
                ) -> SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, T6, ::planus::DefaultValue)>
                {
                    self.other_user(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4, T5, T6, T7> SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [SessionTransfer].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionTransfer>
                where
                    Self: ::planus::WriteAsOffset<SessionTransfer>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                    T4: ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::SessionMessage>]>,
                    >,
                    T5: ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                    T6: ::planus::WriteAsDefault<bool, bool>,
                    T7: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAs<::planus::Offset<SessionTransfer>>
                for SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)>
            {
                type Prepared = ::planus::Offset<SessionTransfer>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionTransfer> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                    T4: ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::SessionMessage>]>,
                    >,
                    T5: ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                    T6: ::planus::WriteAsDefault<bool, bool>,
                    T7: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOptional<::planus::Offset<SessionTransfer>>
                for SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)>
            {
                type Prepared = ::planus::Offset<SessionTransfer>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<SessionTransfer>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                    T4: ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<self::SessionMessage>]>,
                    >,
                    T5: ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                    T6: ::planus::WriteAsDefault<bool, bool>,
                    T7: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOffset<SessionTransfer>
                for SessionTransferBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionTransfer> {
                    let (v0, v1, v2, v3, v4, v5, v6, v7) = &self.0;
                    SessionTransfer::create(builder, v0, v1, v2, v3, v4, v5, v6, v7)
                }
            }

            /// Reference to a deserialized [SessionTransfer].
            #[derive(Copy, Clone)]
            pub struct SessionTransferRef<'a>(
                #[allow(dead_code)] ::planus::table_reader::Table<'a>,
            );

            impl<'a> SessionTransferRef<'a> {
                /// Getter for the [`client_id` field](SessionTransfer#structfield.client_id).
                #[inline]
                pub fn client_id(&self) -> ::planus::Result<&'a ::core::primitive::str> {
                    self.0.access_required(0, "SessionTransfer", "client_id")
                }

                /// Getter for the [`request` field](SessionTransfer#structfield.request).
                #[inline]
                pub fn request(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(1, "SessionTransfer", "request")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`shard` field](SessionTransfer#structfield.shard).
                #[inline]
                pub fn shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(2, "SessionTransfer", "shard")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`session` field](SessionTransfer#structfield.session).
                #[inline]
                pub fn session(&self) -> ::planus::Result<::core::option::Option<&'a [u8]>> {
                    self.0.access(3, "SessionTransfer", "session")
                }

                /// Getter for the [`messages` field](SessionTransfer#structfield.messages).
                #[inline]
                pub fn messages(
                    &self,
                ) -> ::planus::Result<
                    ::core::option::Option<
                        ::planus::Vector<'a, ::planus::Result<self::SessionMessageRef<'a>>>,
                    >,
                > {
                    self.0.access(4, "SessionTransfer", "messages")
                }

                /// Getter for the [`incoming_qos2` field](SessionTransfer#structfield.incoming_qos2).
                #[inline]
                pub fn incoming_qos2(
                    &self,
                ) -> ::planus::Result<::core::option::Option<::planus::Vector<'a, u16>>>
                {
                    self.0.access(5, "SessionTransfer", "incoming_qos2")
                }

                /// Getter for the [`busy` field](SessionTransfer#structfield.busy).
                #[inline]
                pub fn busy(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(6, "SessionTransfer", "busy")?.unwrap_or(false),
                    )
                }

                /// Getter for the [`other_user` field](SessionTransfer#structfield.other_user).
                #[inline]
                pub fn other_user(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(7, "SessionTransfer", "other_user")?.unwrap_or(false),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for SessionTransferRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("SessionTransferRef");
                    f.field("client_id", &self.client_id());
                    f.field("request", &self.request());
                    f.field("shard", &self.shard());
                    if let ::core::option::Option::Some(field_session) = self.session().transpose()
                    {
                        f.field("session", &field_session);
                    }
                    if let ::core::option::Option::Some(field_messages) =
                        self.messages().transpose()
                    {
                        f.field("messages", &field_messages);
                    }
                    if let ::core::option::Option::Some(field_incoming_qos2) =
                        self.incoming_qos2().transpose()
                    {
                        f.field("incoming_qos2", &field_incoming_qos2);
                    }
                    f.field("busy", &self.busy());
                    f.field("other_user", &self.other_user());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<SessionTransferRef<'a>> for SessionTransfer {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: SessionTransferRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        client_id: ::core::convert::Into::into(value.client_id()?),
                        request: ::core::convert::TryInto::try_into(value.request()?)?,
                        shard: ::core::convert::TryInto::try_into(value.shard()?)?,
                        session: value.session()?.map(|v| v.to_vec()),
                        messages: if let ::core::option::Option::Some(messages) =
                            value.messages()?
                        {
                            ::core::option::Option::Some(messages.to_vec_result()?)
                        } else {
                            ::core::option::Option::None
                        },
                        incoming_qos2: if let ::core::option::Option::Some(incoming_qos2) =
                            value.incoming_qos2()?
                        {
                            ::core::option::Option::Some(incoming_qos2.to_vec()?)
                        } else {
                            ::core::option::Option::None
                        },
                        busy: ::core::convert::TryInto::try_into(value.busy()?)?,
                        other_user: ::core::convert::TryInto::try_into(value.other_user()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for SessionTransferRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for SessionTransferRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[SessionTransferRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<SessionTransfer>> for SessionTransfer {
                type Value = ::planus::Offset<SessionTransfer>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<SessionTransfer>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for SessionTransferRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[SessionTransferRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `Heartbeat` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `Heartbeat` in the file `schema/link.fbs:129`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct Heartbeat {
                /// The field `etcd_ok` in the table `Heartbeat`
                pub etcd_ok: bool,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for Heartbeat {
                fn default() -> Self {
                    Self { etcd_ok: false }
                }
            }

            impl Heartbeat {
                /// Creates a [HeartbeatBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> HeartbeatBuilder<()> {
                    HeartbeatBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_etcd_ok: impl ::planus::WriteAsDefault<bool, bool>,
                ) -> ::planus::Offset<Self> {
                    let prepared_etcd_ok = field_etcd_ok.prepare(builder, &false);

                    let mut table_writer: ::planus::table_writer::TableWriter<6> =
                        ::core::default::Default::default();
                    if prepared_etcd_ok.is_some() {
                        table_writer.write_entry::<bool>(0);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_etcd_ok) = prepared_etcd_ok
                            {
                                object_writer.write::<_, _, 1>(&prepared_etcd_ok);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<Heartbeat>> for Heartbeat {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Heartbeat> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<Heartbeat>> for Heartbeat {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Heartbeat>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<Heartbeat> for Heartbeat {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Heartbeat> {
                    Heartbeat::create(builder, self.etcd_ok)
                }
            }

            /// Builder for serializing an instance of the [Heartbeat] type.
            ///
            /// Can be created using the [Heartbeat::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct HeartbeatBuilder<State>(State);

            impl HeartbeatBuilder<()> {
                /// Setter for the [`etcd_ok` field](Heartbeat#structfield.etcd_ok).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn etcd_ok<T0>(self, value: T0) -> HeartbeatBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<bool, bool>,
                {
                    HeartbeatBuilder((value,))
                }

                /// Sets the [`etcd_ok` field](Heartbeat#structfield.etcd_ok) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn etcd_ok_as_default(self) -> HeartbeatBuilder<(::planus::DefaultValue,)> {
                    self.etcd_ok(::planus::DefaultValue)
                }
            }

            impl<T0> HeartbeatBuilder<(T0,)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [Heartbeat].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<Heartbeat>
                where
                    Self: ::planus::WriteAsOffset<Heartbeat>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<T0: ::planus::WriteAsDefault<bool, bool>>
                ::planus::WriteAs<::planus::Offset<Heartbeat>> for HeartbeatBuilder<(T0,)>
            {
                type Prepared = ::planus::Offset<Heartbeat>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Heartbeat> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<T0: ::planus::WriteAsDefault<bool, bool>>
                ::planus::WriteAsOptional<::planus::Offset<Heartbeat>> for HeartbeatBuilder<(T0,)>
            {
                type Prepared = ::planus::Offset<Heartbeat>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Heartbeat>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<T0: ::planus::WriteAsDefault<bool, bool>> ::planus::WriteAsOffset<Heartbeat>
                for HeartbeatBuilder<(T0,)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Heartbeat> {
                    let (v0,) = &self.0;
                    Heartbeat::create(builder, v0)
                }
            }

            /// Reference to a deserialized [Heartbeat].
            #[derive(Copy, Clone)]
            pub struct HeartbeatRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> HeartbeatRef<'a> {
                /// Getter for the [`etcd_ok` field](Heartbeat#structfield.etcd_ok).
                #[inline]
                pub fn etcd_ok(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(0, "Heartbeat", "etcd_ok")?.unwrap_or(false),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for HeartbeatRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("HeartbeatRef");
                    f.field("etcd_ok", &self.etcd_ok());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<HeartbeatRef<'a>> for Heartbeat {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: HeartbeatRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        etcd_ok: ::core::convert::TryInto::try_into(value.etcd_ok()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for HeartbeatRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for HeartbeatRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[HeartbeatRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<Heartbeat>> for Heartbeat {
                type Value = ::planus::Offset<Heartbeat>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<Heartbeat>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for HeartbeatRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[HeartbeatRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `RetainedIndex` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `RetainedIndex` in the file `schema/link.fbs:135`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct RetainedIndex {
                /// The field `topics` in the table `RetainedIndex`
                pub topics: ::core::option::Option<
                    ::planus::alloc::vec::Vec<::planus::alloc::string::String>,
                >,
                /// The field `versions` in the table `RetainedIndex`
                pub versions: ::core::option::Option<::planus::alloc::vec::Vec<u64>>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for RetainedIndex {
                fn default() -> Self {
                    Self {
                        topics: ::core::default::Default::default(),
                        versions: ::core::default::Default::default(),
                    }
                }
            }

            impl RetainedIndex {
                /// Creates a [RetainedIndexBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> RetainedIndexBuilder<()> {
                    RetainedIndexBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_topics: impl ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<str>]>,
                    >,
                    field_versions: impl ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                ) -> ::planus::Offset<Self> {
                    let prepared_topics = field_topics.prepare(builder);
                    let prepared_versions = field_versions.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<8> =
                        ::core::default::Default::default();
                    if prepared_topics.is_some() {
                        table_writer.write_entry::<::planus::Offset<[::planus::Offset<str>]>>(0);
                    }
                    if prepared_versions.is_some() {
                        table_writer.write_entry::<::planus::Offset<[u64]>>(1);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_topics) = prepared_topics {
                                object_writer.write::<_, _, 4>(&prepared_topics);
                            }
                            if let ::core::option::Option::Some(prepared_versions) =
                                prepared_versions
                            {
                                object_writer.write::<_, _, 4>(&prepared_versions);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<RetainedIndex>> for RetainedIndex {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedIndex> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<RetainedIndex>> for RetainedIndex {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedIndex>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<RetainedIndex> for RetainedIndex {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedIndex> {
                    RetainedIndex::create(builder, &self.topics, &self.versions)
                }
            }

            /// Builder for serializing an instance of the [RetainedIndex] type.
            ///
            /// Can be created using the [RetainedIndex::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct RetainedIndexBuilder<State>(State);

            impl RetainedIndexBuilder<()> {
                /// Setter for the [`topics` field](RetainedIndex#structfield.topics).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn topics<T0>(self, value: T0) -> RetainedIndexBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                {
                    RetainedIndexBuilder((value,))
                }

                /// Sets the [`topics` field](RetainedIndex#structfield.topics) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn topics_as_null(self) -> RetainedIndexBuilder<((),)> {
                    self.topics(())
                }
            }

            impl<T0> RetainedIndexBuilder<(T0,)> {
                /// Setter for the [`versions` field](RetainedIndex#structfield.versions).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn versions<T1>(self, value: T1) -> RetainedIndexBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                {
                    let (v0,) = self.0;
                    RetainedIndexBuilder((v0, value))
                }

                /// Sets the [`versions` field](RetainedIndex#structfield.versions) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn versions_as_null(self) -> RetainedIndexBuilder<(T0, ())> {
                    self.versions(())
                }
            }

            impl<T0, T1> RetainedIndexBuilder<(T0, T1)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [RetainedIndex].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedIndex>
                where
                    Self: ::planus::WriteAsOffset<RetainedIndex>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                > ::planus::WriteAs<::planus::Offset<RetainedIndex>>
                for RetainedIndexBuilder<(T0, T1)>
            {
                type Prepared = ::planus::Offset<RetainedIndex>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedIndex> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                > ::planus::WriteAsOptional<::planus::Offset<RetainedIndex>>
                for RetainedIndexBuilder<(T0, T1)>
            {
                type Prepared = ::planus::Offset<RetainedIndex>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedIndex>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                > ::planus::WriteAsOffset<RetainedIndex> for RetainedIndexBuilder<(T0, T1)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedIndex> {
                    let (v0, v1) = &self.0;
                    RetainedIndex::create(builder, v0, v1)
                }
            }

            /// Reference to a deserialized [RetainedIndex].
            #[derive(Copy, Clone)]
            pub struct RetainedIndexRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> RetainedIndexRef<'a> {
                /// Getter for the [`topics` field](RetainedIndex#structfield.topics).
                #[inline]
                pub fn topics(
                    &self,
                ) -> ::planus::Result<
                    ::core::option::Option<
                        ::planus::Vector<'a, ::planus::Result<&'a ::core::primitive::str>>,
                    >,
                > {
                    self.0.access(0, "RetainedIndex", "topics")
                }

                /// Getter for the [`versions` field](RetainedIndex#structfield.versions).
                #[inline]
                pub fn versions(
                    &self,
                ) -> ::planus::Result<::core::option::Option<::planus::Vector<'a, u64>>>
                {
                    self.0.access(1, "RetainedIndex", "versions")
                }
            }

            impl<'a> ::core::fmt::Debug for RetainedIndexRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("RetainedIndexRef");
                    if let ::core::option::Option::Some(field_topics) = self.topics().transpose() {
                        f.field("topics", &field_topics);
                    }
                    if let ::core::option::Option::Some(field_versions) =
                        self.versions().transpose()
                    {
                        f.field("versions", &field_versions);
                    }
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<RetainedIndexRef<'a>> for RetainedIndex {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: RetainedIndexRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        topics: if let ::core::option::Option::Some(topics) = value.topics()? {
                            ::core::option::Option::Some(topics.to_vec_result()?)
                        } else {
                            ::core::option::Option::None
                        },
                        versions: if let ::core::option::Option::Some(versions) =
                            value.versions()?
                        {
                            ::core::option::Option::Some(versions.to_vec()?)
                        } else {
                            ::core::option::Option::None
                        },
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for RetainedIndexRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for RetainedIndexRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[RetainedIndexRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<RetainedIndex>> for RetainedIndex {
                type Value = ::planus::Offset<RetainedIndex>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<RetainedIndex>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for RetainedIndexRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[RetainedIndexRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `RetainedFetch` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `RetainedFetch` in the file `schema/link.fbs:142`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct RetainedFetch {
                /// The field `topic` in the table `RetainedFetch`
                pub topic: ::planus::alloc::string::String,
                /// The field `request` in the table `RetainedFetch`
                pub request: u64,
                /// The field `reply_shard` in the table `RetainedFetch`
                pub reply_shard: u16,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for RetainedFetch {
                fn default() -> Self {
                    Self { topic: ::core::default::Default::default(), request: 0, reply_shard: 0 }
                }
            }

            impl RetainedFetch {
                /// Creates a [RetainedFetchBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> RetainedFetchBuilder<()> {
                    RetainedFetchBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_topic: impl ::planus::WriteAs<::planus::Offset<str>>,
                    field_request: impl ::planus::WriteAsDefault<u64, u64>,
                    field_reply_shard: impl ::planus::WriteAsDefault<u16, u16>,
                ) -> ::planus::Offset<Self> {
                    let prepared_topic = field_topic.prepare(builder);
                    let prepared_request = field_request.prepare(builder, &0);
                    let prepared_reply_shard = field_reply_shard.prepare(builder, &0);

                    let mut table_writer: ::planus::table_writer::TableWriter<10> =
                        ::core::default::Default::default();
                    if prepared_request.is_some() {
                        table_writer.write_entry::<u64>(1);
                    }
                    table_writer.write_entry::<::planus::Offset<str>>(0);
                    if prepared_reply_shard.is_some() {
                        table_writer.write_entry::<u16>(2);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_request) = prepared_request
                            {
                                object_writer.write::<_, _, 8>(&prepared_request);
                            }
                            object_writer.write::<_, _, 4>(&prepared_topic);
                            if let ::core::option::Option::Some(prepared_reply_shard) =
                                prepared_reply_shard
                            {
                                object_writer.write::<_, _, 2>(&prepared_reply_shard);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<RetainedFetch>> for RetainedFetch {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetch> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<RetainedFetch>> for RetainedFetch {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedFetch>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<RetainedFetch> for RetainedFetch {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetch> {
                    RetainedFetch::create(builder, &self.topic, self.request, self.reply_shard)
                }
            }

            /// Builder for serializing an instance of the [RetainedFetch] type.
            ///
            /// Can be created using the [RetainedFetch::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct RetainedFetchBuilder<State>(State);

            impl RetainedFetchBuilder<()> {
                /// Setter for the [`topic` field](RetainedFetch#structfield.topic).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn topic<T0>(self, value: T0) -> RetainedFetchBuilder<(T0,)>
                where
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                {
                    RetainedFetchBuilder((value,))
                }
            }

            impl<T0> RetainedFetchBuilder<(T0,)> {
                /// Setter for the [`request` field](RetainedFetch#structfield.request).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request<T1>(self, value: T1) -> RetainedFetchBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0,) = self.0;
                    RetainedFetchBuilder((v0, value))
                }

                /// Sets the [`request` field](RetainedFetch#structfield.request) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request_as_default(
                    self,
                ) -> RetainedFetchBuilder<(T0, ::planus::DefaultValue)> {
                    self.request(::planus::DefaultValue)
                }
            }

            impl<T0, T1> RetainedFetchBuilder<(T0, T1)> {
                /// Setter for the [`reply_shard` field](RetainedFetch#structfield.reply_shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn reply_shard<T2>(self, value: T2) -> RetainedFetchBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0, v1) = self.0;
                    RetainedFetchBuilder((v0, v1, value))
                }

                /// Sets the [`reply_shard` field](RetainedFetch#structfield.reply_shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn reply_shard_as_default(
                    self,
                ) -> RetainedFetchBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.reply_shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> RetainedFetchBuilder<(T0, T1, T2)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [RetainedFetch].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetch>
                where
                    Self: ::planus::WriteAsOffset<RetainedFetch>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                > ::planus::WriteAs<::planus::Offset<RetainedFetch>>
                for RetainedFetchBuilder<(T0, T1, T2)>
            {
                type Prepared = ::planus::Offset<RetainedFetch>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetch> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                > ::planus::WriteAsOptional<::planus::Offset<RetainedFetch>>
                for RetainedFetchBuilder<(T0, T1, T2)>
            {
                type Prepared = ::planus::Offset<RetainedFetch>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedFetch>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<u16, u16>,
                > ::planus::WriteAsOffset<RetainedFetch> for RetainedFetchBuilder<(T0, T1, T2)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetch> {
                    let (v0, v1, v2) = &self.0;
                    RetainedFetch::create(builder, v0, v1, v2)
                }
            }

            /// Reference to a deserialized [RetainedFetch].
            #[derive(Copy, Clone)]
            pub struct RetainedFetchRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> RetainedFetchRef<'a> {
                /// Getter for the [`topic` field](RetainedFetch#structfield.topic).
                #[inline]
                pub fn topic(&self) -> ::planus::Result<&'a ::core::primitive::str> {
                    self.0.access_required(0, "RetainedFetch", "topic")
                }

                /// Getter for the [`request` field](RetainedFetch#structfield.request).
                #[inline]
                pub fn request(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(1, "RetainedFetch", "request")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`reply_shard` field](RetainedFetch#structfield.reply_shard).
                #[inline]
                pub fn reply_shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(2, "RetainedFetch", "reply_shard")?.unwrap_or(0),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for RetainedFetchRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("RetainedFetchRef");
                    f.field("topic", &self.topic());
                    f.field("request", &self.request());
                    f.field("reply_shard", &self.reply_shard());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<RetainedFetchRef<'a>> for RetainedFetch {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: RetainedFetchRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        topic: ::core::convert::Into::into(value.topic()?),
                        request: ::core::convert::TryInto::try_into(value.request()?)?,
                        reply_shard: ::core::convert::TryInto::try_into(value.reply_shard()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for RetainedFetchRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for RetainedFetchRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[RetainedFetchRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<RetainedFetch>> for RetainedFetch {
                type Value = ::planus::Offset<RetainedFetch>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<RetainedFetch>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for RetainedFetchRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[RetainedFetchRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `RetainedFetched` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `RetainedFetched` in the file `schema/link.fbs:150`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct RetainedFetched {
                /// The field `request` in the table `RetainedFetched`
                pub request: u64,
                /// The field `shard` in the table `RetainedFetched`
                pub shard: u16,
                /// The field `message` in the table `RetainedFetched`
                pub message: ::core::option::Option<::planus::alloc::vec::Vec<u8>>,
                /// The field `version` in the table `RetainedFetched`
                pub version: u64,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for RetainedFetched {
                fn default() -> Self {
                    Self {
                        request: 0,
                        shard: 0,
                        message: ::core::default::Default::default(),
                        version: 0,
                    }
                }
            }

            impl RetainedFetched {
                /// Creates a [RetainedFetchedBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> RetainedFetchedBuilder<()> {
                    RetainedFetchedBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_request: impl ::planus::WriteAsDefault<u64, u64>,
                    field_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_message: impl ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                    field_version: impl ::planus::WriteAsDefault<u64, u64>,
                ) -> ::planus::Offset<Self> {
                    let prepared_request = field_request.prepare(builder, &0);
                    let prepared_shard = field_shard.prepare(builder, &0);
                    let prepared_message = field_message.prepare(builder);
                    let prepared_version = field_version.prepare(builder, &0);

                    let mut table_writer: ::planus::table_writer::TableWriter<12> =
                        ::core::default::Default::default();
                    if prepared_request.is_some() {
                        table_writer.write_entry::<u64>(0);
                    }
                    if prepared_version.is_some() {
                        table_writer.write_entry::<u64>(3);
                    }
                    if prepared_message.is_some() {
                        table_writer.write_entry::<::planus::Offset<[u8]>>(2);
                    }
                    if prepared_shard.is_some() {
                        table_writer.write_entry::<u16>(1);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_request) = prepared_request
                            {
                                object_writer.write::<_, _, 8>(&prepared_request);
                            }
                            if let ::core::option::Option::Some(prepared_version) = prepared_version
                            {
                                object_writer.write::<_, _, 8>(&prepared_version);
                            }
                            if let ::core::option::Option::Some(prepared_message) = prepared_message
                            {
                                object_writer.write::<_, _, 4>(&prepared_message);
                            }
                            if let ::core::option::Option::Some(prepared_shard) = prepared_shard {
                                object_writer.write::<_, _, 2>(&prepared_shard);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<RetainedFetched>> for RetainedFetched {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetched> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<RetainedFetched>> for RetainedFetched {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedFetched>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<RetainedFetched> for RetainedFetched {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetched> {
                    RetainedFetched::create(
                        builder,
                        self.request,
                        self.shard,
                        &self.message,
                        self.version,
                    )
                }
            }

            /// Builder for serializing an instance of the [RetainedFetched] type.
            ///
            /// Can be created using the [RetainedFetched::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct RetainedFetchedBuilder<State>(State);

            impl RetainedFetchedBuilder<()> {
                /// Setter for the [`request` field](RetainedFetched#structfield.request).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request<T0>(self, value: T0) -> RetainedFetchedBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u64, u64>,
                {
                    RetainedFetchedBuilder((value,))
                }

                /// Sets the [`request` field](RetainedFetched#structfield.request) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request_as_default(
                    self,
                ) -> RetainedFetchedBuilder<(::planus::DefaultValue,)> {
                    self.request(::planus::DefaultValue)
                }
            }

            impl<T0> RetainedFetchedBuilder<(T0,)> {
                /// Setter for the [`shard` field](RetainedFetched#structfield.shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard<T1>(self, value: T1) -> RetainedFetchedBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0,) = self.0;
                    RetainedFetchedBuilder((v0, value))
                }

                /// Sets the [`shard` field](RetainedFetched#structfield.shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard_as_default(
                    self,
                ) -> RetainedFetchedBuilder<(T0, ::planus::DefaultValue)> {
                    self.shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1> RetainedFetchedBuilder<(T0, T1)> {
                /// Setter for the [`message` field](RetainedFetched#structfield.message).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn message<T2>(self, value: T2) -> RetainedFetchedBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                {
                    let (v0, v1) = self.0;
                    RetainedFetchedBuilder((v0, v1, value))
                }

                /// Sets the [`message` field](RetainedFetched#structfield.message) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn message_as_null(self) -> RetainedFetchedBuilder<(T0, T1, ())> {
                    self.message(())
                }
            }

            impl<T0, T1, T2> RetainedFetchedBuilder<(T0, T1, T2)> {
                /// Setter for the [`version` field](RetainedFetched#structfield.version).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn version<T3>(self, value: T3) -> RetainedFetchedBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0, v1, v2) = self.0;
                    RetainedFetchedBuilder((v0, v1, v2, value))
                }

                /// Sets the [`version` field](RetainedFetched#structfield.version) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn version_as_default(
                    self,
                ) -> RetainedFetchedBuilder<(T0, T1, T2, ::planus::DefaultValue)> {
                    self.version(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3> RetainedFetchedBuilder<(T0, T1, T2, T3)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [RetainedFetched].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetched>
                where
                    Self: ::planus::WriteAsOffset<RetainedFetched>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                    T3: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAs<::planus::Offset<RetainedFetched>>
                for RetainedFetchedBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<RetainedFetched>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetched> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                    T3: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAsOptional<::planus::Offset<RetainedFetched>>
                for RetainedFetchedBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<RetainedFetched>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedFetched>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[u8]>>,
                    T3: ::planus::WriteAsDefault<u64, u64>,
                > ::planus::WriteAsOffset<RetainedFetched>
                for RetainedFetchedBuilder<(T0, T1, T2, T3)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedFetched> {
                    let (v0, v1, v2, v3) = &self.0;
                    RetainedFetched::create(builder, v0, v1, v2, v3)
                }
            }

            /// Reference to a deserialized [RetainedFetched].
            #[derive(Copy, Clone)]
            pub struct RetainedFetchedRef<'a>(
                #[allow(dead_code)] ::planus::table_reader::Table<'a>,
            );

            impl<'a> RetainedFetchedRef<'a> {
                /// Getter for the [`request` field](RetainedFetched#structfield.request).
                #[inline]
                pub fn request(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(0, "RetainedFetched", "request")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`shard` field](RetainedFetched#structfield.shard).
                #[inline]
                pub fn shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(1, "RetainedFetched", "shard")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`message` field](RetainedFetched#structfield.message).
                #[inline]
                pub fn message(&self) -> ::planus::Result<::core::option::Option<&'a [u8]>> {
                    self.0.access(2, "RetainedFetched", "message")
                }

                /// Getter for the [`version` field](RetainedFetched#structfield.version).
                #[inline]
                pub fn version(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(3, "RetainedFetched", "version")?.unwrap_or(0),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for RetainedFetchedRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("RetainedFetchedRef");
                    f.field("request", &self.request());
                    f.field("shard", &self.shard());
                    if let ::core::option::Option::Some(field_message) = self.message().transpose()
                    {
                        f.field("message", &field_message);
                    }
                    f.field("version", &self.version());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<RetainedFetchedRef<'a>> for RetainedFetched {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: RetainedFetchedRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        request: ::core::convert::TryInto::try_into(value.request()?)?,
                        shard: ::core::convert::TryInto::try_into(value.shard()?)?,
                        message: value.message()?.map(|v| v.to_vec()),
                        version: ::core::convert::TryInto::try_into(value.version()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for RetainedFetchedRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for RetainedFetchedRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[RetainedFetchedRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<RetainedFetched>> for RetainedFetched {
                type Value = ::planus::Offset<RetainedFetched>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<RetainedFetched>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for RetainedFetchedRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[RetainedFetchedRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `RetainedDigest` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `RetainedDigest` in the file `schema/link.fbs:163`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct RetainedDigest {
                /// The field `shards` in the table `RetainedDigest`
                pub shards: u16,
                /// The field `buckets` in the table `RetainedDigest`
                pub buckets: u16,
                /// The field `digests` in the table `RetainedDigest`
                pub digests: ::core::option::Option<::planus::alloc::vec::Vec<u64>>,
                /// The field `ask_back` in the table `RetainedDigest`
                pub ask_back: bool,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for RetainedDigest {
                fn default() -> Self {
                    Self {
                        shards: 0,
                        buckets: 0,
                        digests: ::core::default::Default::default(),
                        ask_back: false,
                    }
                }
            }

            impl RetainedDigest {
                /// Creates a [RetainedDigestBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> RetainedDigestBuilder<()> {
                    RetainedDigestBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_shards: impl ::planus::WriteAsDefault<u16, u16>,
                    field_buckets: impl ::planus::WriteAsDefault<u16, u16>,
                    field_digests: impl ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                    field_ask_back: impl ::planus::WriteAsDefault<bool, bool>,
                ) -> ::planus::Offset<Self> {
                    let prepared_shards = field_shards.prepare(builder, &0);
                    let prepared_buckets = field_buckets.prepare(builder, &0);
                    let prepared_digests = field_digests.prepare(builder);
                    let prepared_ask_back = field_ask_back.prepare(builder, &false);

                    let mut table_writer: ::planus::table_writer::TableWriter<12> =
                        ::core::default::Default::default();
                    if prepared_digests.is_some() {
                        table_writer.write_entry::<::planus::Offset<[u64]>>(2);
                    }
                    if prepared_shards.is_some() {
                        table_writer.write_entry::<u16>(0);
                    }
                    if prepared_buckets.is_some() {
                        table_writer.write_entry::<u16>(1);
                    }
                    if prepared_ask_back.is_some() {
                        table_writer.write_entry::<bool>(3);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_digests) = prepared_digests
                            {
                                object_writer.write::<_, _, 4>(&prepared_digests);
                            }
                            if let ::core::option::Option::Some(prepared_shards) = prepared_shards {
                                object_writer.write::<_, _, 2>(&prepared_shards);
                            }
                            if let ::core::option::Option::Some(prepared_buckets) = prepared_buckets
                            {
                                object_writer.write::<_, _, 2>(&prepared_buckets);
                            }
                            if let ::core::option::Option::Some(prepared_ask_back) =
                                prepared_ask_back
                            {
                                object_writer.write::<_, _, 1>(&prepared_ask_back);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<RetainedDigest>> for RetainedDigest {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedDigest> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<RetainedDigest>> for RetainedDigest {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedDigest>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<RetainedDigest> for RetainedDigest {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedDigest> {
                    RetainedDigest::create(
                        builder,
                        self.shards,
                        self.buckets,
                        &self.digests,
                        self.ask_back,
                    )
                }
            }

            /// Builder for serializing an instance of the [RetainedDigest] type.
            ///
            /// Can be created using the [RetainedDigest::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct RetainedDigestBuilder<State>(State);

            impl RetainedDigestBuilder<()> {
                /// Setter for the [`shards` field](RetainedDigest#structfield.shards).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shards<T0>(self, value: T0) -> RetainedDigestBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u16, u16>,
                {
                    RetainedDigestBuilder((value,))
                }

                /// Sets the [`shards` field](RetainedDigest#structfield.shards) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shards_as_default(self) -> RetainedDigestBuilder<(::planus::DefaultValue,)> {
                    self.shards(::planus::DefaultValue)
                }
            }

            impl<T0> RetainedDigestBuilder<(T0,)> {
                /// Setter for the [`buckets` field](RetainedDigest#structfield.buckets).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn buckets<T1>(self, value: T1) -> RetainedDigestBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0,) = self.0;
                    RetainedDigestBuilder((v0, value))
                }

                /// Sets the [`buckets` field](RetainedDigest#structfield.buckets) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn buckets_as_default(
                    self,
                ) -> RetainedDigestBuilder<(T0, ::planus::DefaultValue)> {
                    self.buckets(::planus::DefaultValue)
                }
            }

            impl<T0, T1> RetainedDigestBuilder<(T0, T1)> {
                /// Setter for the [`digests` field](RetainedDigest#structfield.digests).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn digests<T2>(self, value: T2) -> RetainedDigestBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                {
                    let (v0, v1) = self.0;
                    RetainedDigestBuilder((v0, v1, value))
                }

                /// Sets the [`digests` field](RetainedDigest#structfield.digests) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn digests_as_null(self) -> RetainedDigestBuilder<(T0, T1, ())> {
                    self.digests(())
                }
            }

            impl<T0, T1, T2> RetainedDigestBuilder<(T0, T1, T2)> {
                /// Setter for the [`ask_back` field](RetainedDigest#structfield.ask_back).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn ask_back<T3>(self, value: T3) -> RetainedDigestBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2) = self.0;
                    RetainedDigestBuilder((v0, v1, v2, value))
                }

                /// Sets the [`ask_back` field](RetainedDigest#structfield.ask_back) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn ask_back_as_default(
                    self,
                ) -> RetainedDigestBuilder<(T0, T1, T2, ::planus::DefaultValue)> {
                    self.ask_back(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3> RetainedDigestBuilder<(T0, T1, T2, T3)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [RetainedDigest].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedDigest>
                where
                    Self: ::planus::WriteAsOffset<RetainedDigest>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAs<::planus::Offset<RetainedDigest>>
                for RetainedDigestBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<RetainedDigest>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedDigest> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOptional<::planus::Offset<RetainedDigest>>
                for RetainedDigestBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<RetainedDigest>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedDigest>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOffset<RetainedDigest>
                for RetainedDigestBuilder<(T0, T1, T2, T3)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedDigest> {
                    let (v0, v1, v2, v3) = &self.0;
                    RetainedDigest::create(builder, v0, v1, v2, v3)
                }
            }

            /// Reference to a deserialized [RetainedDigest].
            #[derive(Copy, Clone)]
            pub struct RetainedDigestRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> RetainedDigestRef<'a> {
                /// Getter for the [`shards` field](RetainedDigest#structfield.shards).
                #[inline]
                pub fn shards(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(0, "RetainedDigest", "shards")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`buckets` field](RetainedDigest#structfield.buckets).
                #[inline]
                pub fn buckets(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(1, "RetainedDigest", "buckets")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`digests` field](RetainedDigest#structfield.digests).
                #[inline]
                pub fn digests(
                    &self,
                ) -> ::planus::Result<::core::option::Option<::planus::Vector<'a, u64>>>
                {
                    self.0.access(2, "RetainedDigest", "digests")
                }

                /// Getter for the [`ask_back` field](RetainedDigest#structfield.ask_back).
                #[inline]
                pub fn ask_back(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(3, "RetainedDigest", "ask_back")?.unwrap_or(false),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for RetainedDigestRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("RetainedDigestRef");
                    f.field("shards", &self.shards());
                    f.field("buckets", &self.buckets());
                    if let ::core::option::Option::Some(field_digests) = self.digests().transpose()
                    {
                        f.field("digests", &field_digests);
                    }
                    f.field("ask_back", &self.ask_back());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<RetainedDigestRef<'a>> for RetainedDigest {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: RetainedDigestRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        shards: ::core::convert::TryInto::try_into(value.shards()?)?,
                        buckets: ::core::convert::TryInto::try_into(value.buckets()?)?,
                        digests: if let ::core::option::Option::Some(digests) = value.digests()? {
                            ::core::option::Option::Some(digests.to_vec()?)
                        } else {
                            ::core::option::Option::None
                        },
                        ask_back: ::core::convert::TryInto::try_into(value.ask_back()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for RetainedDigestRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for RetainedDigestRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[RetainedDigestRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<RetainedDigest>> for RetainedDigest {
                type Value = ::planus::Offset<RetainedDigest>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<RetainedDigest>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for RetainedDigestRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[RetainedDigestRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `RetainedVersions` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `RetainedVersions` in the file `schema/link.fbs:176`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct RetainedVersions {
                /// The field `shard` in the table `RetainedVersions`
                pub shard: u16,
                /// The field `buckets` in the table `RetainedVersions`
                pub buckets: ::core::option::Option<::planus::alloc::vec::Vec<u16>>,
                /// The field `topics` in the table `RetainedVersions`
                pub topics: ::core::option::Option<
                    ::planus::alloc::vec::Vec<::planus::alloc::string::String>,
                >,
                /// The field `versions` in the table `RetainedVersions`
                pub versions: ::core::option::Option<::planus::alloc::vec::Vec<u64>>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for RetainedVersions {
                fn default() -> Self {
                    Self {
                        shard: 0,
                        buckets: ::core::default::Default::default(),
                        topics: ::core::default::Default::default(),
                        versions: ::core::default::Default::default(),
                    }
                }
            }

            impl RetainedVersions {
                /// Creates a [RetainedVersionsBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> RetainedVersionsBuilder<()> {
                    RetainedVersionsBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_buckets: impl ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                    field_topics: impl ::planus::WriteAsOptional<
                        ::planus::Offset<[::planus::Offset<str>]>,
                    >,
                    field_versions: impl ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                ) -> ::planus::Offset<Self> {
                    let prepared_shard = field_shard.prepare(builder, &0);
                    let prepared_buckets = field_buckets.prepare(builder);
                    let prepared_topics = field_topics.prepare(builder);
                    let prepared_versions = field_versions.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<12> =
                        ::core::default::Default::default();
                    if prepared_buckets.is_some() {
                        table_writer.write_entry::<::planus::Offset<[u16]>>(1);
                    }
                    if prepared_topics.is_some() {
                        table_writer.write_entry::<::planus::Offset<[::planus::Offset<str>]>>(2);
                    }
                    if prepared_versions.is_some() {
                        table_writer.write_entry::<::planus::Offset<[u64]>>(3);
                    }
                    if prepared_shard.is_some() {
                        table_writer.write_entry::<u16>(0);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_buckets) = prepared_buckets
                            {
                                object_writer.write::<_, _, 4>(&prepared_buckets);
                            }
                            if let ::core::option::Option::Some(prepared_topics) = prepared_topics {
                                object_writer.write::<_, _, 4>(&prepared_topics);
                            }
                            if let ::core::option::Option::Some(prepared_versions) =
                                prepared_versions
                            {
                                object_writer.write::<_, _, 4>(&prepared_versions);
                            }
                            if let ::core::option::Option::Some(prepared_shard) = prepared_shard {
                                object_writer.write::<_, _, 2>(&prepared_shard);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<RetainedVersions>> for RetainedVersions {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedVersions> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<RetainedVersions>> for RetainedVersions {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedVersions>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<RetainedVersions> for RetainedVersions {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedVersions> {
                    RetainedVersions::create(
                        builder,
                        self.shard,
                        &self.buckets,
                        &self.topics,
                        &self.versions,
                    )
                }
            }

            /// Builder for serializing an instance of the [RetainedVersions] type.
            ///
            /// Can be created using the [RetainedVersions::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct RetainedVersionsBuilder<State>(State);

            impl RetainedVersionsBuilder<()> {
                /// Setter for the [`shard` field](RetainedVersions#structfield.shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard<T0>(self, value: T0) -> RetainedVersionsBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u16, u16>,
                {
                    RetainedVersionsBuilder((value,))
                }

                /// Sets the [`shard` field](RetainedVersions#structfield.shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard_as_default(
                    self,
                ) -> RetainedVersionsBuilder<(::planus::DefaultValue,)> {
                    self.shard(::planus::DefaultValue)
                }
            }

            impl<T0> RetainedVersionsBuilder<(T0,)> {
                /// Setter for the [`buckets` field](RetainedVersions#structfield.buckets).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn buckets<T1>(self, value: T1) -> RetainedVersionsBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                {
                    let (v0,) = self.0;
                    RetainedVersionsBuilder((v0, value))
                }

                /// Sets the [`buckets` field](RetainedVersions#structfield.buckets) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn buckets_as_null(self) -> RetainedVersionsBuilder<(T0, ())> {
                    self.buckets(())
                }
            }

            impl<T0, T1> RetainedVersionsBuilder<(T0, T1)> {
                /// Setter for the [`topics` field](RetainedVersions#structfield.topics).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn topics<T2>(self, value: T2) -> RetainedVersionsBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                {
                    let (v0, v1) = self.0;
                    RetainedVersionsBuilder((v0, v1, value))
                }

                /// Sets the [`topics` field](RetainedVersions#structfield.topics) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn topics_as_null(self) -> RetainedVersionsBuilder<(T0, T1, ())> {
                    self.topics(())
                }
            }

            impl<T0, T1, T2> RetainedVersionsBuilder<(T0, T1, T2)> {
                /// Setter for the [`versions` field](RetainedVersions#structfield.versions).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn versions<T3>(self, value: T3) -> RetainedVersionsBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                {
                    let (v0, v1, v2) = self.0;
                    RetainedVersionsBuilder((v0, v1, v2, value))
                }

                /// Sets the [`versions` field](RetainedVersions#structfield.versions) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn versions_as_null(self) -> RetainedVersionsBuilder<(T0, T1, T2, ())> {
                    self.versions(())
                }
            }

            impl<T0, T1, T2, T3> RetainedVersionsBuilder<(T0, T1, T2, T3)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [RetainedVersions].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedVersions>
                where
                    Self: ::planus::WriteAsOffset<RetainedVersions>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                > ::planus::WriteAs<::planus::Offset<RetainedVersions>>
                for RetainedVersionsBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<RetainedVersions>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedVersions> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                > ::planus::WriteAsOptional<::planus::Offset<RetainedVersions>>
                for RetainedVersionsBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<RetainedVersions>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<RetainedVersions>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u16, u16>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<[u16]>>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<[::planus::Offset<str>]>>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<[u64]>>,
                > ::planus::WriteAsOffset<RetainedVersions>
                for RetainedVersionsBuilder<(T0, T1, T2, T3)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<RetainedVersions> {
                    let (v0, v1, v2, v3) = &self.0;
                    RetainedVersions::create(builder, v0, v1, v2, v3)
                }
            }

            /// Reference to a deserialized [RetainedVersions].
            #[derive(Copy, Clone)]
            pub struct RetainedVersionsRef<'a>(
                #[allow(dead_code)] ::planus::table_reader::Table<'a>,
            );

            impl<'a> RetainedVersionsRef<'a> {
                /// Getter for the [`shard` field](RetainedVersions#structfield.shard).
                #[inline]
                pub fn shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(0, "RetainedVersions", "shard")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`buckets` field](RetainedVersions#structfield.buckets).
                #[inline]
                pub fn buckets(
                    &self,
                ) -> ::planus::Result<::core::option::Option<::planus::Vector<'a, u16>>>
                {
                    self.0.access(1, "RetainedVersions", "buckets")
                }

                /// Getter for the [`topics` field](RetainedVersions#structfield.topics).
                #[inline]
                pub fn topics(
                    &self,
                ) -> ::planus::Result<
                    ::core::option::Option<
                        ::planus::Vector<'a, ::planus::Result<&'a ::core::primitive::str>>,
                    >,
                > {
                    self.0.access(2, "RetainedVersions", "topics")
                }

                /// Getter for the [`versions` field](RetainedVersions#structfield.versions).
                #[inline]
                pub fn versions(
                    &self,
                ) -> ::planus::Result<::core::option::Option<::planus::Vector<'a, u64>>>
                {
                    self.0.access(3, "RetainedVersions", "versions")
                }
            }

            impl<'a> ::core::fmt::Debug for RetainedVersionsRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("RetainedVersionsRef");
                    f.field("shard", &self.shard());
                    if let ::core::option::Option::Some(field_buckets) = self.buckets().transpose()
                    {
                        f.field("buckets", &field_buckets);
                    }
                    if let ::core::option::Option::Some(field_topics) = self.topics().transpose() {
                        f.field("topics", &field_topics);
                    }
                    if let ::core::option::Option::Some(field_versions) =
                        self.versions().transpose()
                    {
                        f.field("versions", &field_versions);
                    }
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<RetainedVersionsRef<'a>> for RetainedVersions {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: RetainedVersionsRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        shard: ::core::convert::TryInto::try_into(value.shard()?)?,
                        buckets: if let ::core::option::Option::Some(buckets) = value.buckets()? {
                            ::core::option::Option::Some(buckets.to_vec()?)
                        } else {
                            ::core::option::Option::None
                        },
                        topics: if let ::core::option::Option::Some(topics) = value.topics()? {
                            ::core::option::Option::Some(topics.to_vec_result()?)
                        } else {
                            ::core::option::Option::None
                        },
                        versions: if let ::core::option::Option::Some(versions) =
                            value.versions()?
                        {
                            ::core::option::Option::Some(versions.to_vec()?)
                        } else {
                            ::core::option::Option::None
                        },
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for RetainedVersionsRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for RetainedVersionsRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[RetainedVersionsRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<RetainedVersions>> for RetainedVersions {
                type Value = ::planus::Offset<RetainedVersions>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<RetainedVersions>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for RetainedVersionsRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[RetainedVersionsRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `TransferInstalled` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `TransferInstalled` in the file `schema/link.fbs:188`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct TransferInstalled {
                /// The field `client_id` in the table `TransferInstalled`
                pub client_id: ::planus::alloc::string::String,
                /// The field `request` in the table `TransferInstalled`
                pub request: u64,
                /// The field `installed` in the table `TransferInstalled`
                pub installed: bool,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for TransferInstalled {
                fn default() -> Self {
                    Self {
                        client_id: ::core::default::Default::default(),
                        request: 0,
                        installed: true,
                    }
                }
            }

            impl TransferInstalled {
                /// Creates a [TransferInstalledBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> TransferInstalledBuilder<()> {
                    TransferInstalledBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_client_id: impl ::planus::WriteAs<::planus::Offset<str>>,
                    field_request: impl ::planus::WriteAsDefault<u64, u64>,
                    field_installed: impl ::planus::WriteAsDefault<bool, bool>,
                ) -> ::planus::Offset<Self> {
                    let prepared_client_id = field_client_id.prepare(builder);
                    let prepared_request = field_request.prepare(builder, &0);
                    let prepared_installed = field_installed.prepare(builder, &true);

                    let mut table_writer: ::planus::table_writer::TableWriter<10> =
                        ::core::default::Default::default();
                    if prepared_request.is_some() {
                        table_writer.write_entry::<u64>(1);
                    }
                    table_writer.write_entry::<::planus::Offset<str>>(0);
                    if prepared_installed.is_some() {
                        table_writer.write_entry::<bool>(2);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_request) = prepared_request
                            {
                                object_writer.write::<_, _, 8>(&prepared_request);
                            }
                            object_writer.write::<_, _, 4>(&prepared_client_id);
                            if let ::core::option::Option::Some(prepared_installed) =
                                prepared_installed
                            {
                                object_writer.write::<_, _, 1>(&prepared_installed);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<TransferInstalled>> for TransferInstalled {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TransferInstalled> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<TransferInstalled>> for TransferInstalled {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<TransferInstalled>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<TransferInstalled> for TransferInstalled {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TransferInstalled> {
                    TransferInstalled::create(
                        builder,
                        &self.client_id,
                        self.request,
                        self.installed,
                    )
                }
            }

            /// Builder for serializing an instance of the [TransferInstalled] type.
            ///
            /// Can be created using the [TransferInstalled::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct TransferInstalledBuilder<State>(State);

            impl TransferInstalledBuilder<()> {
                /// Setter for the [`client_id` field](TransferInstalled#structfield.client_id).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn client_id<T0>(self, value: T0) -> TransferInstalledBuilder<(T0,)>
                where
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                {
                    TransferInstalledBuilder((value,))
                }
            }

            impl<T0> TransferInstalledBuilder<(T0,)> {
                /// Setter for the [`request` field](TransferInstalled#structfield.request).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request<T1>(self, value: T1) -> TransferInstalledBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u64, u64>,
                {
                    let (v0,) = self.0;
                    TransferInstalledBuilder((v0, value))
                }

                /// Sets the [`request` field](TransferInstalled#structfield.request) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request_as_default(
                    self,
                ) -> TransferInstalledBuilder<(T0, ::planus::DefaultValue)> {
                    self.request(::planus::DefaultValue)
                }
            }

            impl<T0, T1> TransferInstalledBuilder<(T0, T1)> {
                /// Setter for the [`installed` field](TransferInstalled#structfield.installed).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn installed<T2>(self, value: T2) -> TransferInstalledBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1) = self.0;
                    TransferInstalledBuilder((v0, v1, value))
                }

                /// Sets the [`installed` field](TransferInstalled#structfield.installed) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn installed_as_default(
                    self,
                ) -> TransferInstalledBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.installed(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> TransferInstalledBuilder<(T0, T1, T2)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [TransferInstalled].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TransferInstalled>
                where
                    Self: ::planus::WriteAsOffset<TransferInstalled>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAs<::planus::Offset<TransferInstalled>>
                for TransferInstalledBuilder<(T0, T1, T2)>
            {
                type Prepared = ::planus::Offset<TransferInstalled>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TransferInstalled> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOptional<::planus::Offset<TransferInstalled>>
                for TransferInstalledBuilder<(T0, T1, T2)>
            {
                type Prepared = ::planus::Offset<TransferInstalled>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<TransferInstalled>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsDefault<u64, u64>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                > ::planus::WriteAsOffset<TransferInstalled>
                for TransferInstalledBuilder<(T0, T1, T2)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<TransferInstalled> {
                    let (v0, v1, v2) = &self.0;
                    TransferInstalled::create(builder, v0, v1, v2)
                }
            }

            /// Reference to a deserialized [TransferInstalled].
            #[derive(Copy, Clone)]
            pub struct TransferInstalledRef<'a>(
                #[allow(dead_code)] ::planus::table_reader::Table<'a>,
            );

            impl<'a> TransferInstalledRef<'a> {
                /// Getter for the [`client_id` field](TransferInstalled#structfield.client_id).
                #[inline]
                pub fn client_id(&self) -> ::planus::Result<&'a ::core::primitive::str> {
                    self.0.access_required(0, "TransferInstalled", "client_id")
                }

                /// Getter for the [`request` field](TransferInstalled#structfield.request).
                #[inline]
                pub fn request(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(1, "TransferInstalled", "request")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`installed` field](TransferInstalled#structfield.installed).
                #[inline]
                pub fn installed(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(2, "TransferInstalled", "installed")?.unwrap_or(true),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for TransferInstalledRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("TransferInstalledRef");
                    f.field("client_id", &self.client_id());
                    f.field("request", &self.request());
                    f.field("installed", &self.installed());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<TransferInstalledRef<'a>> for TransferInstalled {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: TransferInstalledRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        client_id: ::core::convert::Into::into(value.client_id()?),
                        request: ::core::convert::TryInto::try_into(value.request()?)?,
                        installed: ::core::convert::TryInto::try_into(value.installed()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for TransferInstalledRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for TransferInstalledRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[TransferInstalledRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<TransferInstalled>> for TransferInstalled {
                type Value = ::planus::Offset<TransferInstalled>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<TransferInstalled>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for TransferInstalledRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[TransferInstalledRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `SessionInvite` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `SessionInvite` in the file `schema/link.fbs:198`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct SessionInvite {
                /// The field `client_id` in the table `SessionInvite`
                pub client_id: ::planus::alloc::string::String,
                /// The field `username` in the table `SessionInvite`
                pub username: ::core::option::Option<::planus::alloc::string::String>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for SessionInvite {
                fn default() -> Self {
                    Self {
                        client_id: ::core::default::Default::default(),
                        username: ::core::default::Default::default(),
                    }
                }
            }

            impl SessionInvite {
                /// Creates a [SessionInviteBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> SessionInviteBuilder<()> {
                    SessionInviteBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_client_id: impl ::planus::WriteAs<::planus::Offset<str>>,
                    field_username: impl ::planus::WriteAsOptional<
                        ::planus::Offset<::core::primitive::str>,
                    >,
                ) -> ::planus::Offset<Self> {
                    let prepared_client_id = field_client_id.prepare(builder);
                    let prepared_username = field_username.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<8> =
                        ::core::default::Default::default();
                    table_writer.write_entry::<::planus::Offset<str>>(0);
                    if prepared_username.is_some() {
                        table_writer.write_entry::<::planus::Offset<str>>(1);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            object_writer.write::<_, _, 4>(&prepared_client_id);
                            if let ::core::option::Option::Some(prepared_username) =
                                prepared_username
                            {
                                object_writer.write::<_, _, 4>(&prepared_username);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<SessionInvite>> for SessionInvite {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionInvite> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<SessionInvite>> for SessionInvite {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<SessionInvite>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<SessionInvite> for SessionInvite {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionInvite> {
                    SessionInvite::create(builder, &self.client_id, &self.username)
                }
            }

            /// Builder for serializing an instance of the [SessionInvite] type.
            ///
            /// Can be created using the [SessionInvite::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct SessionInviteBuilder<State>(State);

            impl SessionInviteBuilder<()> {
                /// Setter for the [`client_id` field](SessionInvite#structfield.client_id).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn client_id<T0>(self, value: T0) -> SessionInviteBuilder<(T0,)>
                where
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                {
                    SessionInviteBuilder((value,))
                }
            }

            impl<T0> SessionInviteBuilder<(T0,)> {
                /// Setter for the [`username` field](SessionInvite#structfield.username).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn username<T1>(self, value: T1) -> SessionInviteBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                {
                    let (v0,) = self.0;
                    SessionInviteBuilder((v0, value))
                }

                /// Sets the [`username` field](SessionInvite#structfield.username) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn username_as_null(self) -> SessionInviteBuilder<(T0, ())> {
                    self.username(())
                }
            }

            impl<T0, T1> SessionInviteBuilder<(T0, T1)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [SessionInvite].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionInvite>
                where
                    Self: ::planus::WriteAsOffset<SessionInvite>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAs<::planus::Offset<SessionInvite>>
                for SessionInviteBuilder<(T0, T1)>
            {
                type Prepared = ::planus::Offset<SessionInvite>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionInvite> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAsOptional<::planus::Offset<SessionInvite>>
                for SessionInviteBuilder<(T0, T1)>
            {
                type Prepared = ::planus::Offset<SessionInvite>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<SessionInvite>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAs<::planus::Offset<str>>,
                    T1: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAsOffset<SessionInvite> for SessionInviteBuilder<(T0, T1)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<SessionInvite> {
                    let (v0, v1) = &self.0;
                    SessionInvite::create(builder, v0, v1)
                }
            }

            /// Reference to a deserialized [SessionInvite].
            #[derive(Copy, Clone)]
            pub struct SessionInviteRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> SessionInviteRef<'a> {
                /// Getter for the [`client_id` field](SessionInvite#structfield.client_id).
                #[inline]
                pub fn client_id(&self) -> ::planus::Result<&'a ::core::primitive::str> {
                    self.0.access_required(0, "SessionInvite", "client_id")
                }

                /// Getter for the [`username` field](SessionInvite#structfield.username).
                #[inline]
                pub fn username(
                    &self,
                ) -> ::planus::Result<::core::option::Option<&'a ::core::primitive::str>>
                {
                    self.0.access(1, "SessionInvite", "username")
                }
            }

            impl<'a> ::core::fmt::Debug for SessionInviteRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("SessionInviteRef");
                    f.field("client_id", &self.client_id());
                    if let ::core::option::Option::Some(field_username) =
                        self.username().transpose()
                    {
                        f.field("username", &field_username);
                    }
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<SessionInviteRef<'a>> for SessionInvite {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: SessionInviteRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        client_id: ::core::convert::Into::into(value.client_id()?),
                        username: value.username()?.map(::core::convert::Into::into),
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for SessionInviteRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for SessionInviteRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[SessionInviteRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<SessionInvite>> for SessionInvite {
                type Value = ::planus::Offset<SessionInvite>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<SessionInvite>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for SessionInviteRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[SessionInviteRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `AdminQuery` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `AdminQuery` in the file `schema/link.fbs:206`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct AdminQuery {
                /// The field `request` in the table `AdminQuery`
                pub request: u64,
                /// The field `reply_shard` in the table `AdminQuery`
                pub reply_shard: u16,
                /// The field `client_id` in the table `AdminQuery`
                pub client_id: ::core::option::Option<::planus::alloc::string::String>,
                /// The field `kick` in the table `AdminQuery`
                pub kick: bool,
                /// The field `clean` in the table `AdminQuery`
                pub clean: bool,
                /// The field `list` in the table `AdminQuery`
                pub list: bool,
                /// The field `shard` in the table `AdminQuery`
                pub shard: u16,
                /// The field `limit` in the table `AdminQuery`
                pub limit: u32,
                /// The field `presence` in the table `AdminQuery`
                pub presence: u8,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for AdminQuery {
                fn default() -> Self {
                    Self {
                        request: 0,
                        reply_shard: 0,
                        client_id: ::core::default::Default::default(),
                        kick: false,
                        clean: false,
                        list: false,
                        shard: 0,
                        limit: 0,
                        presence: 0,
                    }
                }
            }

            impl AdminQuery {
                /// Creates a [AdminQueryBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> AdminQueryBuilder<()> {
                    AdminQueryBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_request: impl ::planus::WriteAsDefault<u64, u64>,
                    field_reply_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_client_id: impl ::planus::WriteAsOptional<
                        ::planus::Offset<::core::primitive::str>,
                    >,
                    field_kick: impl ::planus::WriteAsDefault<bool, bool>,
                    field_clean: impl ::planus::WriteAsDefault<bool, bool>,
                    field_list: impl ::planus::WriteAsDefault<bool, bool>,
                    field_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_limit: impl ::planus::WriteAsDefault<u32, u32>,
                    field_presence: impl ::planus::WriteAsDefault<u8, u8>,
                ) -> ::planus::Offset<Self> {
                    let prepared_request = field_request.prepare(builder, &0);
                    let prepared_reply_shard = field_reply_shard.prepare(builder, &0);
                    let prepared_client_id = field_client_id.prepare(builder);
                    let prepared_kick = field_kick.prepare(builder, &false);
                    let prepared_clean = field_clean.prepare(builder, &false);
                    let prepared_list = field_list.prepare(builder, &false);
                    let prepared_shard = field_shard.prepare(builder, &0);
                    let prepared_limit = field_limit.prepare(builder, &0);
                    let prepared_presence = field_presence.prepare(builder, &0);

                    let mut table_writer: ::planus::table_writer::TableWriter<22> =
                        ::core::default::Default::default();
                    if prepared_request.is_some() {
                        table_writer.write_entry::<u64>(0);
                    }
                    if prepared_client_id.is_some() {
                        table_writer.write_entry::<::planus::Offset<str>>(2);
                    }
                    if prepared_limit.is_some() {
                        table_writer.write_entry::<u32>(7);
                    }
                    if prepared_reply_shard.is_some() {
                        table_writer.write_entry::<u16>(1);
                    }
                    if prepared_shard.is_some() {
                        table_writer.write_entry::<u16>(6);
                    }
                    if prepared_kick.is_some() {
                        table_writer.write_entry::<bool>(3);
                    }
                    if prepared_clean.is_some() {
                        table_writer.write_entry::<bool>(4);
                    }
                    if prepared_list.is_some() {
                        table_writer.write_entry::<bool>(5);
                    }
                    if prepared_presence.is_some() {
                        table_writer.write_entry::<u8>(8);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_request) = prepared_request
                            {
                                object_writer.write::<_, _, 8>(&prepared_request);
                            }
                            if let ::core::option::Option::Some(prepared_client_id) =
                                prepared_client_id
                            {
                                object_writer.write::<_, _, 4>(&prepared_client_id);
                            }
                            if let ::core::option::Option::Some(prepared_limit) = prepared_limit {
                                object_writer.write::<_, _, 4>(&prepared_limit);
                            }
                            if let ::core::option::Option::Some(prepared_reply_shard) =
                                prepared_reply_shard
                            {
                                object_writer.write::<_, _, 2>(&prepared_reply_shard);
                            }
                            if let ::core::option::Option::Some(prepared_shard) = prepared_shard {
                                object_writer.write::<_, _, 2>(&prepared_shard);
                            }
                            if let ::core::option::Option::Some(prepared_kick) = prepared_kick {
                                object_writer.write::<_, _, 1>(&prepared_kick);
                            }
                            if let ::core::option::Option::Some(prepared_clean) = prepared_clean {
                                object_writer.write::<_, _, 1>(&prepared_clean);
                            }
                            if let ::core::option::Option::Some(prepared_list) = prepared_list {
                                object_writer.write::<_, _, 1>(&prepared_list);
                            }
                            if let ::core::option::Option::Some(prepared_presence) =
                                prepared_presence
                            {
                                object_writer.write::<_, _, 1>(&prepared_presence);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<AdminQuery>> for AdminQuery {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<AdminQuery> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<AdminQuery>> for AdminQuery {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<AdminQuery>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<AdminQuery> for AdminQuery {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<AdminQuery> {
                    AdminQuery::create(
                        builder,
                        self.request,
                        self.reply_shard,
                        &self.client_id,
                        self.kick,
                        self.clean,
                        self.list,
                        self.shard,
                        self.limit,
                        self.presence,
                    )
                }
            }

            /// Builder for serializing an instance of the [AdminQuery] type.
            ///
            /// Can be created using the [AdminQuery::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct AdminQueryBuilder<State>(State);

            impl AdminQueryBuilder<()> {
                /// Setter for the [`request` field](AdminQuery#structfield.request).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request<T0>(self, value: T0) -> AdminQueryBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u64, u64>,
                {
                    AdminQueryBuilder((value,))
                }

                /// Sets the [`request` field](AdminQuery#structfield.request) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request_as_default(self) -> AdminQueryBuilder<(::planus::DefaultValue,)> {
                    self.request(::planus::DefaultValue)
                }
            }

            impl<T0> AdminQueryBuilder<(T0,)> {
                /// Setter for the [`reply_shard` field](AdminQuery#structfield.reply_shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn reply_shard<T1>(self, value: T1) -> AdminQueryBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0,) = self.0;
                    AdminQueryBuilder((v0, value))
                }

                /// Sets the [`reply_shard` field](AdminQuery#structfield.reply_shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn reply_shard_as_default(
                    self,
                ) -> AdminQueryBuilder<(T0, ::planus::DefaultValue)> {
                    self.reply_shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1> AdminQueryBuilder<(T0, T1)> {
                /// Setter for the [`client_id` field](AdminQuery#structfield.client_id).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn client_id<T2>(self, value: T2) -> AdminQueryBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                {
                    let (v0, v1) = self.0;
                    AdminQueryBuilder((v0, v1, value))
                }

                /// Sets the [`client_id` field](AdminQuery#structfield.client_id) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn client_id_as_null(self) -> AdminQueryBuilder<(T0, T1, ())> {
                    self.client_id(())
                }
            }

            impl<T0, T1, T2> AdminQueryBuilder<(T0, T1, T2)> {
                /// Setter for the [`kick` field](AdminQuery#structfield.kick).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn kick<T3>(self, value: T3) -> AdminQueryBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2) = self.0;
                    AdminQueryBuilder((v0, v1, v2, value))
                }

                /// Sets the [`kick` field](AdminQuery#structfield.kick) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn kick_as_default(
                    self,
                ) -> AdminQueryBuilder<(T0, T1, T2, ::planus::DefaultValue)> {
                    self.kick(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3> AdminQueryBuilder<(T0, T1, T2, T3)> {
                /// Setter for the [`clean` field](AdminQuery#structfield.clean).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn clean<T4>(self, value: T4) -> AdminQueryBuilder<(T0, T1, T2, T3, T4)>
                where
                    T4: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2, v3) = self.0;
                    AdminQueryBuilder((v0, v1, v2, v3, value))
                }

                /// Sets the [`clean` field](AdminQuery#structfield.clean) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn clean_as_default(
                    self,
                ) -> AdminQueryBuilder<(T0, T1, T2, T3, ::planus::DefaultValue)> {
                    self.clean(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4> AdminQueryBuilder<(T0, T1, T2, T3, T4)> {
                /// Setter for the [`list` field](AdminQuery#structfield.list).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn list<T5>(self, value: T5) -> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5)>
                where
                    T5: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1, v2, v3, v4) = self.0;
                    AdminQueryBuilder((v0, v1, v2, v3, v4, value))
                }

                /// Sets the [`list` field](AdminQuery#structfield.list) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn list_as_default(
                    self,
                ) -> AdminQueryBuilder<(T0, T1, T2, T3, T4, ::planus::DefaultValue)>
                {
                    self.list(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4, T5> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5)> {
                /// Setter for the [`shard` field](AdminQuery#structfield.shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard<T6>(self, value: T6) -> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6)>
                where
                    T6: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0, v1, v2, v3, v4, v5) = self.0;
                    AdminQueryBuilder((v0, v1, v2, v3, v4, v5, value))
                }

                /// Sets the [`shard` field](AdminQuery#structfield.shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard_as_default(
                    self,
                ) -> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, ::planus::DefaultValue)>
                {
                    self.shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4, T5, T6> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6)> {
                /// Setter for the [`limit` field](AdminQuery#structfield.limit).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn limit<T7>(
                    self,
                    value: T7,
                ) -> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)>
                where
                    T7: ::planus::WriteAsDefault<u32, u32>,
                {
                    let (v0, v1, v2, v3, v4, v5, v6) = self.0;
                    AdminQueryBuilder((v0, v1, v2, v3, v4, v5, v6, value))
                }

                /// Sets the [`limit` field](AdminQuery#structfield.limit) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn limit_as_default(
                    self,
                ) -> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, ::planus::DefaultValue)>
                {
                    self.limit(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4, T5, T6, T7> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, T7)> {
                /// Setter for the [`presence` field](AdminQuery#structfield.presence).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn presence<T8>(
                    self,
                    value: T8,
                ) -> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)>
                where
                    T8: ::planus::WriteAsDefault<u8, u8>,
                {
                    let (v0, v1, v2, v3, v4, v5, v6, v7) = self.0;
                    AdminQueryBuilder((v0, v1, v2, v3, v4, v5, v6, v7, value))
                }

                /// Sets the [`presence` field](AdminQuery#structfield.presence) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn presence_as_default(
                    self,
                ) -> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, ::planus::DefaultValue)>
                {
                    self.presence(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2, T3, T4, T5, T6, T7, T8> AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [AdminQuery].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<AdminQuery>
                where
                    Self: ::planus::WriteAsOffset<AdminQuery>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsDefault<bool, bool>,
                    T5: ::planus::WriteAsDefault<bool, bool>,
                    T6: ::planus::WriteAsDefault<u16, u16>,
                    T7: ::planus::WriteAsDefault<u32, u32>,
                    T8: ::planus::WriteAsDefault<u8, u8>,
                > ::planus::WriteAs<::planus::Offset<AdminQuery>>
                for AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)>
            {
                type Prepared = ::planus::Offset<AdminQuery>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<AdminQuery> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsDefault<bool, bool>,
                    T5: ::planus::WriteAsDefault<bool, bool>,
                    T6: ::planus::WriteAsDefault<u16, u16>,
                    T7: ::planus::WriteAsDefault<u32, u32>,
                    T8: ::planus::WriteAsDefault<u8, u8>,
                > ::planus::WriteAsOptional<::planus::Offset<AdminQuery>>
                for AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)>
            {
                type Prepared = ::planus::Offset<AdminQuery>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<AdminQuery>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                    T3: ::planus::WriteAsDefault<bool, bool>,
                    T4: ::planus::WriteAsDefault<bool, bool>,
                    T5: ::planus::WriteAsDefault<bool, bool>,
                    T6: ::planus::WriteAsDefault<u16, u16>,
                    T7: ::planus::WriteAsDefault<u32, u32>,
                    T8: ::planus::WriteAsDefault<u8, u8>,
                > ::planus::WriteAsOffset<AdminQuery>
                for AdminQueryBuilder<(T0, T1, T2, T3, T4, T5, T6, T7, T8)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<AdminQuery> {
                    let (v0, v1, v2, v3, v4, v5, v6, v7, v8) = &self.0;
                    AdminQuery::create(builder, v0, v1, v2, v3, v4, v5, v6, v7, v8)
                }
            }

            /// Reference to a deserialized [AdminQuery].
            #[derive(Copy, Clone)]
            pub struct AdminQueryRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> AdminQueryRef<'a> {
                /// Getter for the [`request` field](AdminQuery#structfield.request).
                #[inline]
                pub fn request(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(0, "AdminQuery", "request")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`reply_shard` field](AdminQuery#structfield.reply_shard).
                #[inline]
                pub fn reply_shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(1, "AdminQuery", "reply_shard")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`client_id` field](AdminQuery#structfield.client_id).
                #[inline]
                pub fn client_id(
                    &self,
                ) -> ::planus::Result<::core::option::Option<&'a ::core::primitive::str>>
                {
                    self.0.access(2, "AdminQuery", "client_id")
                }

                /// Getter for the [`kick` field](AdminQuery#structfield.kick).
                #[inline]
                pub fn kick(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(3, "AdminQuery", "kick")?.unwrap_or(false),
                    )
                }

                /// Getter for the [`clean` field](AdminQuery#structfield.clean).
                #[inline]
                pub fn clean(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(4, "AdminQuery", "clean")?.unwrap_or(false),
                    )
                }

                /// Getter for the [`list` field](AdminQuery#structfield.list).
                #[inline]
                pub fn list(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(5, "AdminQuery", "list")?.unwrap_or(false),
                    )
                }

                /// Getter for the [`shard` field](AdminQuery#structfield.shard).
                #[inline]
                pub fn shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(6, "AdminQuery", "shard")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`limit` field](AdminQuery#structfield.limit).
                #[inline]
                pub fn limit(&self) -> ::planus::Result<u32> {
                    ::core::result::Result::Ok(
                        self.0.access(7, "AdminQuery", "limit")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`presence` field](AdminQuery#structfield.presence).
                #[inline]
                pub fn presence(&self) -> ::planus::Result<u8> {
                    ::core::result::Result::Ok(
                        self.0.access(8, "AdminQuery", "presence")?.unwrap_or(0),
                    )
                }
            }

            impl<'a> ::core::fmt::Debug for AdminQueryRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("AdminQueryRef");
                    f.field("request", &self.request());
                    f.field("reply_shard", &self.reply_shard());
                    if let ::core::option::Option::Some(field_client_id) =
                        self.client_id().transpose()
                    {
                        f.field("client_id", &field_client_id);
                    }
                    f.field("kick", &self.kick());
                    f.field("clean", &self.clean());
                    f.field("list", &self.list());
                    f.field("shard", &self.shard());
                    f.field("limit", &self.limit());
                    f.field("presence", &self.presence());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<AdminQueryRef<'a>> for AdminQuery {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: AdminQueryRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        request: ::core::convert::TryInto::try_into(value.request()?)?,
                        reply_shard: ::core::convert::TryInto::try_into(value.reply_shard()?)?,
                        client_id: value.client_id()?.map(::core::convert::Into::into),
                        kick: ::core::convert::TryInto::try_into(value.kick()?)?,
                        clean: ::core::convert::TryInto::try_into(value.clean()?)?,
                        list: ::core::convert::TryInto::try_into(value.list()?)?,
                        shard: ::core::convert::TryInto::try_into(value.shard()?)?,
                        limit: ::core::convert::TryInto::try_into(value.limit()?)?,
                        presence: ::core::convert::TryInto::try_into(value.presence()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for AdminQueryRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for AdminQueryRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[AdminQueryRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<AdminQuery>> for AdminQuery {
                type Value = ::planus::Offset<AdminQuery>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<AdminQuery>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for AdminQueryRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[AdminQueryRef]", "read_as_root", 0)
                    })
                }
            }

            /// The table `AdminAnswer` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `AdminAnswer` in the file `schema/link.fbs:225`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct AdminAnswer {
                /// The field `request` in the table `AdminAnswer`
                pub request: u64,
                /// The field `shard` in the table `AdminAnswer`
                pub shard: u16,
                /// The field `found` in the table `AdminAnswer`
                pub found: bool,
                /// The field `detail` in the table `AdminAnswer`
                pub detail: ::core::option::Option<::planus::alloc::string::String>,
            }

            #[allow(clippy::derivable_impls)]
            impl ::core::default::Default for AdminAnswer {
                fn default() -> Self {
                    Self {
                        request: 0,
                        shard: 0,
                        found: false,
                        detail: ::core::default::Default::default(),
                    }
                }
            }

            impl AdminAnswer {
                /// Creates a [AdminAnswerBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> AdminAnswerBuilder<()> {
                    AdminAnswerBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_request: impl ::planus::WriteAsDefault<u64, u64>,
                    field_shard: impl ::planus::WriteAsDefault<u16, u16>,
                    field_found: impl ::planus::WriteAsDefault<bool, bool>,
                    field_detail: impl ::planus::WriteAsOptional<
                        ::planus::Offset<::core::primitive::str>,
                    >,
                ) -> ::planus::Offset<Self> {
                    let prepared_request = field_request.prepare(builder, &0);
                    let prepared_shard = field_shard.prepare(builder, &0);
                    let prepared_found = field_found.prepare(builder, &false);
                    let prepared_detail = field_detail.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<12> =
                        ::core::default::Default::default();
                    if prepared_request.is_some() {
                        table_writer.write_entry::<u64>(0);
                    }
                    if prepared_detail.is_some() {
                        table_writer.write_entry::<::planus::Offset<str>>(3);
                    }
                    if prepared_shard.is_some() {
                        table_writer.write_entry::<u16>(1);
                    }
                    if prepared_found.is_some() {
                        table_writer.write_entry::<bool>(2);
                    }

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            if let ::core::option::Option::Some(prepared_request) = prepared_request
                            {
                                object_writer.write::<_, _, 8>(&prepared_request);
                            }
                            if let ::core::option::Option::Some(prepared_detail) = prepared_detail {
                                object_writer.write::<_, _, 4>(&prepared_detail);
                            }
                            if let ::core::option::Option::Some(prepared_shard) = prepared_shard {
                                object_writer.write::<_, _, 2>(&prepared_shard);
                            }
                            if let ::core::option::Option::Some(prepared_found) = prepared_found {
                                object_writer.write::<_, _, 1>(&prepared_found);
                            }
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<AdminAnswer>> for AdminAnswer {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<AdminAnswer> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<AdminAnswer>> for AdminAnswer {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<AdminAnswer>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<AdminAnswer> for AdminAnswer {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<AdminAnswer> {
                    AdminAnswer::create(builder, self.request, self.shard, self.found, &self.detail)
                }
            }

            /// Builder for serializing an instance of the [AdminAnswer] type.
            ///
            /// Can be created using the [AdminAnswer::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct AdminAnswerBuilder<State>(State);

            impl AdminAnswerBuilder<()> {
                /// Setter for the [`request` field](AdminAnswer#structfield.request).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request<T0>(self, value: T0) -> AdminAnswerBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsDefault<u64, u64>,
                {
                    AdminAnswerBuilder((value,))
                }

                /// Sets the [`request` field](AdminAnswer#structfield.request) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn request_as_default(self) -> AdminAnswerBuilder<(::planus::DefaultValue,)> {
                    self.request(::planus::DefaultValue)
                }
            }

            impl<T0> AdminAnswerBuilder<(T0,)> {
                /// Setter for the [`shard` field](AdminAnswer#structfield.shard).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard<T1>(self, value: T1) -> AdminAnswerBuilder<(T0, T1)>
                where
                    T1: ::planus::WriteAsDefault<u16, u16>,
                {
                    let (v0,) = self.0;
                    AdminAnswerBuilder((v0, value))
                }

                /// Sets the [`shard` field](AdminAnswer#structfield.shard) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn shard_as_default(self) -> AdminAnswerBuilder<(T0, ::planus::DefaultValue)> {
                    self.shard(::planus::DefaultValue)
                }
            }

            impl<T0, T1> AdminAnswerBuilder<(T0, T1)> {
                /// Setter for the [`found` field](AdminAnswer#structfield.found).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn found<T2>(self, value: T2) -> AdminAnswerBuilder<(T0, T1, T2)>
                where
                    T2: ::planus::WriteAsDefault<bool, bool>,
                {
                    let (v0, v1) = self.0;
                    AdminAnswerBuilder((v0, v1, value))
                }

                /// Sets the [`found` field](AdminAnswer#structfield.found) to the default value.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn found_as_default(
                    self,
                ) -> AdminAnswerBuilder<(T0, T1, ::planus::DefaultValue)> {
                    self.found(::planus::DefaultValue)
                }
            }

            impl<T0, T1, T2> AdminAnswerBuilder<(T0, T1, T2)> {
                /// Setter for the [`detail` field](AdminAnswer#structfield.detail).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn detail<T3>(self, value: T3) -> AdminAnswerBuilder<(T0, T1, T2, T3)>
                where
                    T3: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                {
                    let (v0, v1, v2) = self.0;
                    AdminAnswerBuilder((v0, v1, v2, value))
                }

                /// Sets the [`detail` field](AdminAnswer#structfield.detail) to null.
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn detail_as_null(self) -> AdminAnswerBuilder<(T0, T1, T2, ())> {
                    self.detail(())
                }
            }

            impl<T0, T1, T2, T3> AdminAnswerBuilder<(T0, T1, T2, T3)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [AdminAnswer].
                #[inline]
                pub fn finish(
                    self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<AdminAnswer>
                where
                    Self: ::planus::WriteAsOffset<AdminAnswer>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAs<::planus::Offset<AdminAnswer>>
                for AdminAnswerBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<AdminAnswer>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<AdminAnswer> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAsOptional<::planus::Offset<AdminAnswer>>
                for AdminAnswerBuilder<(T0, T1, T2, T3)>
            {
                type Prepared = ::planus::Offset<AdminAnswer>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<AdminAnswer>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<
                    T0: ::planus::WriteAsDefault<u64, u64>,
                    T1: ::planus::WriteAsDefault<u16, u16>,
                    T2: ::planus::WriteAsDefault<bool, bool>,
                    T3: ::planus::WriteAsOptional<::planus::Offset<::core::primitive::str>>,
                > ::planus::WriteAsOffset<AdminAnswer> for AdminAnswerBuilder<(T0, T1, T2, T3)>
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::planus::Offset<AdminAnswer> {
                    let (v0, v1, v2, v3) = &self.0;
                    AdminAnswer::create(builder, v0, v1, v2, v3)
                }
            }

            /// Reference to a deserialized [AdminAnswer].
            #[derive(Copy, Clone)]
            pub struct AdminAnswerRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> AdminAnswerRef<'a> {
                /// Getter for the [`request` field](AdminAnswer#structfield.request).
                #[inline]
                pub fn request(&self) -> ::planus::Result<u64> {
                    ::core::result::Result::Ok(
                        self.0.access(0, "AdminAnswer", "request")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`shard` field](AdminAnswer#structfield.shard).
                #[inline]
                pub fn shard(&self) -> ::planus::Result<u16> {
                    ::core::result::Result::Ok(
                        self.0.access(1, "AdminAnswer", "shard")?.unwrap_or(0),
                    )
                }

                /// Getter for the [`found` field](AdminAnswer#structfield.found).
                #[inline]
                pub fn found(&self) -> ::planus::Result<bool> {
                    ::core::result::Result::Ok(
                        self.0.access(2, "AdminAnswer", "found")?.unwrap_or(false),
                    )
                }

                /// Getter for the [`detail` field](AdminAnswer#structfield.detail).
                #[inline]
                pub fn detail(
                    &self,
                ) -> ::planus::Result<::core::option::Option<&'a ::core::primitive::str>>
                {
                    self.0.access(3, "AdminAnswer", "detail")
                }
            }

            impl<'a> ::core::fmt::Debug for AdminAnswerRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("AdminAnswerRef");
                    f.field("request", &self.request());
                    f.field("shard", &self.shard());
                    f.field("found", &self.found());
                    if let ::core::option::Option::Some(field_detail) = self.detail().transpose() {
                        f.field("detail", &field_detail);
                    }
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<AdminAnswerRef<'a>> for AdminAnswer {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: AdminAnswerRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        request: ::core::convert::TryInto::try_into(value.request()?)?,
                        shard: ::core::convert::TryInto::try_into(value.shard()?)?,
                        found: ::core::convert::TryInto::try_into(value.found()?)?,
                        detail: value.detail()?.map(::core::convert::Into::into),
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for AdminAnswerRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for AdminAnswerRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[AdminAnswerRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<AdminAnswer>> for AdminAnswer {
                type Value = ::planus::Offset<AdminAnswer>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<AdminAnswer>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for AdminAnswerRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[AdminAnswerRef]", "read_as_root", 0)
                    })
                }
            }

            /// The union `Body` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Union `Body` in the file `schema/link.fbs:233`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub enum Body {
                /// The variant of type `Hello` in the union `Body`
                Hello(::planus::alloc::boxed::Box<self::Hello>),

                /// The variant of type `RouteSnapshot` in the union `Body`
                RouteSnapshot(::planus::alloc::boxed::Box<self::RouteSnapshot>),

                /// The variant of type `RouteDelta` in the union `Body`
                RouteDelta(::planus::alloc::boxed::Box<self::RouteDelta>),

                /// The variant of type `Publish` in the union `Body`
                Publish(::planus::alloc::boxed::Box<self::Publish>),

                /// The variant of type `Receipt` in the union `Body`
                Receipt(::planus::alloc::boxed::Box<self::Receipt>),

                /// The variant of type `TakeoverRequest` in the union `Body`
                TakeoverRequest(::planus::alloc::boxed::Box<self::TakeoverRequest>),

                /// The variant of type `SessionTransfer` in the union `Body`
                SessionTransfer(::planus::alloc::boxed::Box<self::SessionTransfer>),

                /// The variant of type `Heartbeat` in the union `Body`
                Heartbeat(::planus::alloc::boxed::Box<self::Heartbeat>),

                /// The variant of type `RetainedIndex` in the union `Body`
                RetainedIndex(::planus::alloc::boxed::Box<self::RetainedIndex>),

                /// The variant of type `RetainedFetch` in the union `Body`
                RetainedFetch(::planus::alloc::boxed::Box<self::RetainedFetch>),

                /// The variant of type `RetainedFetched` in the union `Body`
                RetainedFetched(::planus::alloc::boxed::Box<self::RetainedFetched>),

                /// The variant of type `TransferInstalled` in the union `Body`
                TransferInstalled(::planus::alloc::boxed::Box<self::TransferInstalled>),

                /// The variant of type `Pace` in the union `Body`
                Pace(::planus::alloc::boxed::Box<self::Pace>),

                /// The variant of type `RetainedDigest` in the union `Body`
                RetainedDigest(::planus::alloc::boxed::Box<self::RetainedDigest>),

                /// The variant of type `RetainedVersions` in the union `Body`
                RetainedVersions(::planus::alloc::boxed::Box<self::RetainedVersions>),

                /// The variant of type `SessionInvite` in the union `Body`
                SessionInvite(::planus::alloc::boxed::Box<self::SessionInvite>),

                /// The variant of type `AdminQuery` in the union `Body`
                AdminQuery(::planus::alloc::boxed::Box<self::AdminQuery>),

                /// The variant of type `AdminAnswer` in the union `Body`
                AdminAnswer(::planus::alloc::boxed::Box<self::AdminAnswer>),
            }

            impl Body {
                /// Creates a [BodyBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> BodyBuilder<::planus::Uninitialized> {
                    BodyBuilder(::planus::Uninitialized)
                }

                #[inline]
                pub fn create_hello(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::Hello>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(1, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_route_snapshot(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::RouteSnapshot>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(2, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_route_delta(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::RouteDelta>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(3, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_publish(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::Publish>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(4, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_receipt(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::Receipt>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(5, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_takeover_request(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::TakeoverRequest>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(6, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_session_transfer(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::SessionTransfer>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(7, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_heartbeat(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::Heartbeat>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(8, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_retained_index(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::RetainedIndex>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(9, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_retained_fetch(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::RetainedFetch>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(10, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_retained_fetched(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::RetainedFetched>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(11, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_transfer_installed(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::TransferInstalled>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(12, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_pace(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::Pace>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(13, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_retained_digest(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::RetainedDigest>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(14, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_retained_versions(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::RetainedVersions>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(15, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_session_invite(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::SessionInvite>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(16, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_admin_query(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::AdminQuery>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(17, value.prepare(builder).downcast())
                }

                #[inline]
                pub fn create_admin_answer(
                    builder: &mut ::planus::Builder,
                    value: impl ::planus::WriteAsOffset<self::AdminAnswer>,
                ) -> ::planus::UnionOffset<Self> {
                    ::planus::UnionOffset::new(18, value.prepare(builder).downcast())
                }
            }

            impl ::planus::WriteAsUnion<Body> for Body {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Self> {
                    match self {
                        Self::Hello(value) => Self::create_hello(builder, value),
                        Self::RouteSnapshot(value) => Self::create_route_snapshot(builder, value),
                        Self::RouteDelta(value) => Self::create_route_delta(builder, value),
                        Self::Publish(value) => Self::create_publish(builder, value),
                        Self::Receipt(value) => Self::create_receipt(builder, value),
                        Self::TakeoverRequest(value) => {
                            Self::create_takeover_request(builder, value)
                        }
                        Self::SessionTransfer(value) => {
                            Self::create_session_transfer(builder, value)
                        }
                        Self::Heartbeat(value) => Self::create_heartbeat(builder, value),
                        Self::RetainedIndex(value) => Self::create_retained_index(builder, value),
                        Self::RetainedFetch(value) => Self::create_retained_fetch(builder, value),
                        Self::RetainedFetched(value) => {
                            Self::create_retained_fetched(builder, value)
                        }
                        Self::TransferInstalled(value) => {
                            Self::create_transfer_installed(builder, value)
                        }
                        Self::Pace(value) => Self::create_pace(builder, value),
                        Self::RetainedDigest(value) => Self::create_retained_digest(builder, value),
                        Self::RetainedVersions(value) => {
                            Self::create_retained_versions(builder, value)
                        }
                        Self::SessionInvite(value) => Self::create_session_invite(builder, value),
                        Self::AdminQuery(value) => Self::create_admin_query(builder, value),
                        Self::AdminAnswer(value) => Self::create_admin_answer(builder, value),
                    }
                }
            }

            impl ::planus::WriteAsOptionalUnion<Body> for Body {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Self>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }

            /// Builder for serializing an instance of the [Body] type.
            ///
            /// Can be created using the [Body::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct BodyBuilder<T>(T);

            impl BodyBuilder<::planus::Uninitialized> {
                /// Creates an instance of the [`Hello` variant](Body#variant.Hello).
                #[inline]
                pub fn hello<T>(self, value: T) -> BodyBuilder<::planus::Initialized<1, T>>
                where
                    T: ::planus::WriteAsOffset<self::Hello>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`RouteSnapshot` variant](Body#variant.RouteSnapshot).
                #[inline]
                pub fn route_snapshot<T>(self, value: T) -> BodyBuilder<::planus::Initialized<2, T>>
                where
                    T: ::planus::WriteAsOffset<self::RouteSnapshot>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`RouteDelta` variant](Body#variant.RouteDelta).
                #[inline]
                pub fn route_delta<T>(self, value: T) -> BodyBuilder<::planus::Initialized<3, T>>
                where
                    T: ::planus::WriteAsOffset<self::RouteDelta>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`Publish` variant](Body#variant.Publish).
                #[inline]
                pub fn publish<T>(self, value: T) -> BodyBuilder<::planus::Initialized<4, T>>
                where
                    T: ::planus::WriteAsOffset<self::Publish>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`Receipt` variant](Body#variant.Receipt).
                #[inline]
                pub fn receipt<T>(self, value: T) -> BodyBuilder<::planus::Initialized<5, T>>
                where
                    T: ::planus::WriteAsOffset<self::Receipt>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`TakeoverRequest` variant](Body#variant.TakeoverRequest).
                #[inline]
                pub fn takeover_request<T>(
                    self,
                    value: T,
                ) -> BodyBuilder<::planus::Initialized<6, T>>
                where
                    T: ::planus::WriteAsOffset<self::TakeoverRequest>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`SessionTransfer` variant](Body#variant.SessionTransfer).
                #[inline]
                pub fn session_transfer<T>(
                    self,
                    value: T,
                ) -> BodyBuilder<::planus::Initialized<7, T>>
                where
                    T: ::planus::WriteAsOffset<self::SessionTransfer>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`Heartbeat` variant](Body#variant.Heartbeat).
                #[inline]
                pub fn heartbeat<T>(self, value: T) -> BodyBuilder<::planus::Initialized<8, T>>
                where
                    T: ::planus::WriteAsOffset<self::Heartbeat>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`RetainedIndex` variant](Body#variant.RetainedIndex).
                #[inline]
                pub fn retained_index<T>(self, value: T) -> BodyBuilder<::planus::Initialized<9, T>>
                where
                    T: ::planus::WriteAsOffset<self::RetainedIndex>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`RetainedFetch` variant](Body#variant.RetainedFetch).
                #[inline]
                pub fn retained_fetch<T>(
                    self,
                    value: T,
                ) -> BodyBuilder<::planus::Initialized<10, T>>
                where
                    T: ::planus::WriteAsOffset<self::RetainedFetch>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`RetainedFetched` variant](Body#variant.RetainedFetched).
                #[inline]
                pub fn retained_fetched<T>(
                    self,
                    value: T,
                ) -> BodyBuilder<::planus::Initialized<11, T>>
                where
                    T: ::planus::WriteAsOffset<self::RetainedFetched>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`TransferInstalled` variant](Body#variant.TransferInstalled).
                #[inline]
                pub fn transfer_installed<T>(
                    self,
                    value: T,
                ) -> BodyBuilder<::planus::Initialized<12, T>>
                where
                    T: ::planus::WriteAsOffset<self::TransferInstalled>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`Pace` variant](Body#variant.Pace).
                #[inline]
                pub fn pace<T>(self, value: T) -> BodyBuilder<::planus::Initialized<13, T>>
                where
                    T: ::planus::WriteAsOffset<self::Pace>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`RetainedDigest` variant](Body#variant.RetainedDigest).
                #[inline]
                pub fn retained_digest<T>(
                    self,
                    value: T,
                ) -> BodyBuilder<::planus::Initialized<14, T>>
                where
                    T: ::planus::WriteAsOffset<self::RetainedDigest>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`RetainedVersions` variant](Body#variant.RetainedVersions).
                #[inline]
                pub fn retained_versions<T>(
                    self,
                    value: T,
                ) -> BodyBuilder<::planus::Initialized<15, T>>
                where
                    T: ::planus::WriteAsOffset<self::RetainedVersions>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`SessionInvite` variant](Body#variant.SessionInvite).
                #[inline]
                pub fn session_invite<T>(
                    self,
                    value: T,
                ) -> BodyBuilder<::planus::Initialized<16, T>>
                where
                    T: ::planus::WriteAsOffset<self::SessionInvite>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`AdminQuery` variant](Body#variant.AdminQuery).
                #[inline]
                pub fn admin_query<T>(self, value: T) -> BodyBuilder<::planus::Initialized<17, T>>
                where
                    T: ::planus::WriteAsOffset<self::AdminQuery>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }

                /// Creates an instance of the [`AdminAnswer` variant](Body#variant.AdminAnswer).
                #[inline]
                pub fn admin_answer<T>(self, value: T) -> BodyBuilder<::planus::Initialized<18, T>>
                where
                    T: ::planus::WriteAsOffset<self::AdminAnswer>,
                {
                    BodyBuilder(::planus::Initialized(value))
                }
            }

            impl<const N: u8, T> BodyBuilder<::planus::Initialized<N, T>> {
                /// Finish writing the builder to get an [UnionOffset](::planus::UnionOffset) to a serialized [Body].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body>
                where
                    Self: ::planus::WriteAsUnion<Body>,
                {
                    ::planus::WriteAsUnion::prepare(&self, builder)
                }
            }

            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<1, T>>
            where
                T: ::planus::WriteAsOffset<self::Hello>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(1, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<1, T>>
            where
                T: ::planus::WriteAsOffset<self::Hello>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<2, T>>
            where
                T: ::planus::WriteAsOffset<self::RouteSnapshot>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(2, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<2, T>>
            where
                T: ::planus::WriteAsOffset<self::RouteSnapshot>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<3, T>>
            where
                T: ::planus::WriteAsOffset<self::RouteDelta>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(3, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<3, T>>
            where
                T: ::planus::WriteAsOffset<self::RouteDelta>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<4, T>>
            where
                T: ::planus::WriteAsOffset<self::Publish>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(4, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<4, T>>
            where
                T: ::planus::WriteAsOffset<self::Publish>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<5, T>>
            where
                T: ::planus::WriteAsOffset<self::Receipt>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(5, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<5, T>>
            where
                T: ::planus::WriteAsOffset<self::Receipt>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<6, T>>
            where
                T: ::planus::WriteAsOffset<self::TakeoverRequest>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(6, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<6, T>>
            where
                T: ::planus::WriteAsOffset<self::TakeoverRequest>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<7, T>>
            where
                T: ::planus::WriteAsOffset<self::SessionTransfer>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(7, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<7, T>>
            where
                T: ::planus::WriteAsOffset<self::SessionTransfer>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<8, T>>
            where
                T: ::planus::WriteAsOffset<self::Heartbeat>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(8, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<8, T>>
            where
                T: ::planus::WriteAsOffset<self::Heartbeat>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<9, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedIndex>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(9, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<9, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedIndex>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<10, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedFetch>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(10, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<10, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedFetch>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<11, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedFetched>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(11, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<11, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedFetched>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<12, T>>
            where
                T: ::planus::WriteAsOffset<self::TransferInstalled>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(12, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<12, T>>
            where
                T: ::planus::WriteAsOffset<self::TransferInstalled>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<13, T>>
            where
                T: ::planus::WriteAsOffset<self::Pace>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(13, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<13, T>>
            where
                T: ::planus::WriteAsOffset<self::Pace>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<14, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedDigest>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(14, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<14, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedDigest>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<15, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedVersions>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(15, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<15, T>>
            where
                T: ::planus::WriteAsOffset<self::RetainedVersions>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<16, T>>
            where
                T: ::planus::WriteAsOffset<self::SessionInvite>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(16, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<16, T>>
            where
                T: ::planus::WriteAsOffset<self::SessionInvite>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<17, T>>
            where
                T: ::planus::WriteAsOffset<self::AdminQuery>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(17, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<17, T>>
            where
                T: ::planus::WriteAsOffset<self::AdminQuery>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }
            impl<T> ::planus::WriteAsUnion<Body> for BodyBuilder<::planus::Initialized<18, T>>
            where
                T: ::planus::WriteAsOffset<self::AdminAnswer>,
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::UnionOffset<Body> {
                    ::planus::UnionOffset::new(18, (self.0).0.prepare(builder).downcast())
                }
            }

            impl<T> ::planus::WriteAsOptionalUnion<Body> for BodyBuilder<::planus::Initialized<18, T>>
            where
                T: ::planus::WriteAsOffset<self::AdminAnswer>,
            {
                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::UnionOffset<Body>> {
                    ::core::option::Option::Some(::planus::WriteAsUnion::prepare(self, builder))
                }
            }

            /// Reference to a deserialized [Body].
            #[derive(Copy, Clone, Debug)]
            pub enum BodyRef<'a> {
                Hello(self::HelloRef<'a>),
                RouteSnapshot(self::RouteSnapshotRef<'a>),
                RouteDelta(self::RouteDeltaRef<'a>),
                Publish(self::PublishRef<'a>),
                Receipt(self::ReceiptRef<'a>),
                TakeoverRequest(self::TakeoverRequestRef<'a>),
                SessionTransfer(self::SessionTransferRef<'a>),
                Heartbeat(self::HeartbeatRef<'a>),
                RetainedIndex(self::RetainedIndexRef<'a>),
                RetainedFetch(self::RetainedFetchRef<'a>),
                RetainedFetched(self::RetainedFetchedRef<'a>),
                TransferInstalled(self::TransferInstalledRef<'a>),
                Pace(self::PaceRef<'a>),
                RetainedDigest(self::RetainedDigestRef<'a>),
                RetainedVersions(self::RetainedVersionsRef<'a>),
                SessionInvite(self::SessionInviteRef<'a>),
                AdminQuery(self::AdminQueryRef<'a>),
                AdminAnswer(self::AdminAnswerRef<'a>),
            }

            impl<'a> ::core::convert::TryFrom<BodyRef<'a>> for Body {
                type Error = ::planus::Error;

                fn try_from(value: BodyRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(match value {
                        BodyRef::Hello(value) => Self::Hello(::planus::alloc::boxed::Box::new(
                            ::core::convert::TryFrom::try_from(value)?,
                        )),

                        BodyRef::RouteSnapshot(value) => {
                            Self::RouteSnapshot(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::RouteDelta(value) => {
                            Self::RouteDelta(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::Publish(value) => Self::Publish(::planus::alloc::boxed::Box::new(
                            ::core::convert::TryFrom::try_from(value)?,
                        )),

                        BodyRef::Receipt(value) => Self::Receipt(::planus::alloc::boxed::Box::new(
                            ::core::convert::TryFrom::try_from(value)?,
                        )),

                        BodyRef::TakeoverRequest(value) => {
                            Self::TakeoverRequest(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::SessionTransfer(value) => {
                            Self::SessionTransfer(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::Heartbeat(value) => {
                            Self::Heartbeat(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::RetainedIndex(value) => {
                            Self::RetainedIndex(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::RetainedFetch(value) => {
                            Self::RetainedFetch(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::RetainedFetched(value) => {
                            Self::RetainedFetched(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::TransferInstalled(value) => {
                            Self::TransferInstalled(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::Pace(value) => Self::Pace(::planus::alloc::boxed::Box::new(
                            ::core::convert::TryFrom::try_from(value)?,
                        )),

                        BodyRef::RetainedDigest(value) => {
                            Self::RetainedDigest(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::RetainedVersions(value) => {
                            Self::RetainedVersions(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::SessionInvite(value) => {
                            Self::SessionInvite(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::AdminQuery(value) => {
                            Self::AdminQuery(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }

                        BodyRef::AdminAnswer(value) => {
                            Self::AdminAnswer(::planus::alloc::boxed::Box::new(
                                ::core::convert::TryFrom::try_from(value)?,
                            ))
                        }
                    })
                }
            }

            impl<'a> ::planus::TableReadUnion<'a> for BodyRef<'a> {
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    tag: u8,
                    field_offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    match tag {
                        1 => ::core::result::Result::Ok(Self::Hello(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        2 => ::core::result::Result::Ok(Self::RouteSnapshot(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        3 => ::core::result::Result::Ok(Self::RouteDelta(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        4 => ::core::result::Result::Ok(Self::Publish(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        5 => ::core::result::Result::Ok(Self::Receipt(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        6 => ::core::result::Result::Ok(Self::TakeoverRequest(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        7 => ::core::result::Result::Ok(Self::SessionTransfer(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        8 => ::core::result::Result::Ok(Self::Heartbeat(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        9 => ::core::result::Result::Ok(Self::RetainedIndex(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        10 => ::core::result::Result::Ok(Self::RetainedFetch(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        11 => ::core::result::Result::Ok(Self::RetainedFetched(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        12 => ::core::result::Result::Ok(Self::TransferInstalled(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        13 => ::core::result::Result::Ok(Self::Pace(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        14 => ::core::result::Result::Ok(Self::RetainedDigest(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        15 => ::core::result::Result::Ok(Self::RetainedVersions(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        16 => ::core::result::Result::Ok(Self::SessionInvite(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        17 => ::core::result::Result::Ok(Self::AdminQuery(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        18 => ::core::result::Result::Ok(Self::AdminAnswer(
                            ::planus::TableRead::from_buffer(buffer, field_offset)?,
                        )),
                        _ => ::core::result::Result::Err(
                            ::planus::errors::ErrorKind::UnknownUnionTag { tag },
                        ),
                    }
                }
            }

            impl<'a> ::planus::VectorReadUnion<'a> for BodyRef<'a> {
                const VECTOR_NAME: &'static str = "[BodyRef]";
            }

            /// The table `Frame` in the namespace `shardmq.link`
            ///
            /// Generated from these locations:
            /// * Table `Frame` in the file `schema/link.fbs:254`
            #[derive(
                Clone,
                Debug,
                PartialEq,
                PartialOrd,
                Eq,
                Ord,
                Hash,
                ::serde::Serialize,
                ::serde::Deserialize,
            )]
            pub struct Frame {
                /// The field `body` in the table `Frame`
                pub body: self::Body,
            }

            impl Frame {
                /// Creates a [FrameBuilder] for serializing an instance of this table.
                #[inline]
                pub fn builder() -> FrameBuilder<()> {
                    FrameBuilder(())
                }

                #[allow(clippy::too_many_arguments)]
                pub fn create(
                    builder: &mut ::planus::Builder,
                    field_body: impl ::planus::WriteAsUnion<self::Body>,
                ) -> ::planus::Offset<Self> {
                    let prepared_body = field_body.prepare(builder);

                    let mut table_writer: ::planus::table_writer::TableWriter<8> =
                        ::core::default::Default::default();
                    table_writer.write_entry::<::planus::Offset<self::Body>>(1);
                    table_writer.write_entry::<u8>(0);

                    unsafe {
                        table_writer.finish(builder, |object_writer| {
                            object_writer.write::<_, _, 4>(&prepared_body.offset());
                            object_writer.write::<_, _, 1>(&prepared_body.tag());
                        });
                    }
                    builder.current_offset()
                }
            }

            impl ::planus::WriteAs<::planus::Offset<Frame>> for Frame {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Frame> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl ::planus::WriteAsOptional<::planus::Offset<Frame>> for Frame {
                type Prepared = ::planus::Offset<Self>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Frame>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl ::planus::WriteAsOffset<Frame> for Frame {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Frame> {
                    Frame::create(builder, &self.body)
                }
            }

            /// Builder for serializing an instance of the [Frame] type.
            ///
            /// Can be created using the [Frame::builder] method.
            #[derive(Debug)]
            #[must_use]
            pub struct FrameBuilder<State>(State);

            impl FrameBuilder<()> {
                /// Setter for the [`body` field](Frame#structfield.body).
                #[inline]
                #[allow(clippy::type_complexity)]
                pub fn body<T0>(self, value: T0) -> FrameBuilder<(T0,)>
                where
                    T0: ::planus::WriteAsUnion<self::Body>,
                {
                    FrameBuilder((value,))
                }
            }

            impl<T0> FrameBuilder<(T0,)> {
                /// Finish writing the builder to get an [Offset](::planus::Offset) to a serialized [Frame].
                #[inline]
                pub fn finish(self, builder: &mut ::planus::Builder) -> ::planus::Offset<Frame>
                where
                    Self: ::planus::WriteAsOffset<Frame>,
                {
                    ::planus::WriteAsOffset::prepare(&self, builder)
                }
            }

            impl<T0: ::planus::WriteAsUnion<self::Body>> ::planus::WriteAs<::planus::Offset<Frame>>
                for FrameBuilder<(T0,)>
            {
                type Prepared = ::planus::Offset<Frame>;

                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Frame> {
                    ::planus::WriteAsOffset::prepare(self, builder)
                }
            }

            impl<T0: ::planus::WriteAsUnion<self::Body>>
                ::planus::WriteAsOptional<::planus::Offset<Frame>> for FrameBuilder<(T0,)>
            {
                type Prepared = ::planus::Offset<Frame>;

                #[inline]
                fn prepare(
                    &self,
                    builder: &mut ::planus::Builder,
                ) -> ::core::option::Option<::planus::Offset<Frame>> {
                    ::core::option::Option::Some(::planus::WriteAsOffset::prepare(self, builder))
                }
            }

            impl<T0: ::planus::WriteAsUnion<self::Body>> ::planus::WriteAsOffset<Frame>
                for FrameBuilder<(T0,)>
            {
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> ::planus::Offset<Frame> {
                    let (v0,) = &self.0;
                    Frame::create(builder, v0)
                }
            }

            /// Reference to a deserialized [Frame].
            #[derive(Copy, Clone)]
            pub struct FrameRef<'a>(#[allow(dead_code)] ::planus::table_reader::Table<'a>);

            impl<'a> FrameRef<'a> {
                /// Getter for the [`body` field](Frame#structfield.body).
                #[inline]
                pub fn body(&self) -> ::planus::Result<self::BodyRef<'a>> {
                    self.0.access_union_required(0, "Frame", "body")
                }
            }

            impl<'a> ::core::fmt::Debug for FrameRef<'a> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    let mut f = f.debug_struct("FrameRef");
                    f.field("body", &self.body());
                    f.finish()
                }
            }

            impl<'a> ::core::convert::TryFrom<FrameRef<'a>> for Frame {
                type Error = ::planus::Error;

                #[allow(unreachable_code)]
                fn try_from(value: FrameRef<'a>) -> ::planus::Result<Self> {
                    ::core::result::Result::Ok(Self {
                        body: ::core::convert::TryInto::try_into(value.body()?)?,
                    })
                }
            }

            impl<'a> ::planus::TableRead<'a> for FrameRef<'a> {
                #[inline]
                fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::core::result::Result<Self, ::planus::errors::ErrorKind> {
                    ::core::result::Result::Ok(Self(::planus::table_reader::Table::from_buffer(
                        buffer, offset,
                    )?))
                }
            }

            impl<'a> ::planus::VectorReadInner<'a> for FrameRef<'a> {
                type Error = ::planus::Error;
                const STRIDE: usize = 4;

                unsafe fn from_buffer(
                    buffer: ::planus::SliceWithStartOffset<'a>,
                    offset: usize,
                ) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(buffer, offset).map_err(|error_kind| {
                        error_kind.with_error_location(
                            "[FrameRef]",
                            "get",
                            buffer.offset_from_start,
                        )
                    })
                }
            }

            /// # Safety
            /// The planus compiler generates implementations that initialize
            /// the bytes in `write_values`.
            unsafe impl ::planus::VectorWrite<::planus::Offset<Frame>> for Frame {
                type Value = ::planus::Offset<Frame>;
                const STRIDE: usize = 4;
                #[inline]
                fn prepare(&self, builder: &mut ::planus::Builder) -> Self::Value {
                    ::planus::WriteAs::prepare(self, builder)
                }

                #[inline]
                unsafe fn write_values(
                    values: &[::planus::Offset<Frame>],
                    bytes: *mut ::core::mem::MaybeUninit<u8>,
                    buffer_position: u32,
                ) {
                    let bytes = bytes as *mut [::core::mem::MaybeUninit<u8>; 4];
                    for (i, v) in ::core::iter::Iterator::enumerate(values.iter()) {
                        ::planus::WriteAsPrimitive::write(
                            v,
                            ::planus::Cursor::new(unsafe { &mut *bytes.add(i) }),
                            buffer_position - (Self::STRIDE * i) as u32,
                        );
                    }
                }
            }

            impl<'a> ::planus::ReadAsRoot<'a> for FrameRef<'a> {
                fn read_as_root(slice: &'a [u8]) -> ::planus::Result<Self> {
                    ::planus::TableRead::from_buffer(
                        ::planus::SliceWithStartOffset { buffer: slice, offset_from_start: 0 },
                        0,
                    )
                    .map_err(|error_kind| {
                        error_kind.with_error_location("[FrameRef]", "read_as_root", 0)
                    })
                }
            }
        }
    }
}
